/* The partitioners: uniform, params, time and memory (dynamic programming over contiguous
 * splits), auto (search over P, D, B, M, schedule and recomputation), pricing of a plan, and the
 * search for the LM head's vocabulary-shard count (pt_plan_best_head_split). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition_internal.h"
#include "pipetrain/model.h"
#ifdef PT_PARTITION_HAVE_SCHEDULE
#include "pipetrain/schedule.h"
#endif

/* ---- context: prefix sums over layers, boundary links ---- */

static int node_of(const pt_topology *t, int global_rank) { return global_rank / t->devices_per_node; }

static void place(const char *schedule, int P, int V, int k, int *rank)
{
    if (strcmp(schedule, "zbv") == 0 && V == 2)
        *rank = k < P ? k : 2 * P - 1 - k;
    else
        *rank = k % P;
}

pt_status pt_part_ctx_create(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                             const pt_layer_times *measured, int P, int V, int D, int B, int M, int T,
                             const char *schedule, pt_part_ctx **out)
{
    return pt_part_ctx_create_tp(cfg, dev, topo, measured, P, V, D, B, M, T, schedule, 1, 0, out);
}

pt_status pt_part_ctx_create_tp(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                                const pt_layer_times *measured, int P, int V, int D, int B, int M, int T,
                                const char *schedule, int tp, int sp, pt_part_ctx **out)
{
    PT_CHECK(pt_plan_check_tp(cfg, tp, topo->devices_per_node));
    const int L = pt_model_n_layers(cfg), S = P * V;
    if (S > L)
        return pt_fail(PT_EINVAL, "%d stages x %d chunks = %d chunks but %s has only %d layers; use fewer stages", P, V,
                       S, cfg->name[0] ? cfg->name : "the model", L);
    if (M < 1)
        return pt_fail(PT_EINVAL, "micro-batches per step must be >= 1 (got %d)", M);
    pt_part_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return pt_fail(PT_ENOMEM, "out of host memory for the planner");
    c->cfg = cfg;
    c->dev = dev;
    c->topo = topo;
    c->L = L;
    c->P = P;
    c->V = V;
    c->D = D;
    c->S = S;
    c->B = B;
    c->M = M;
    c->T = T;
    c->tp = tp;
    c->sp = tp > 1 && sp ? 1 : 0;
    snprintf(c->schedule, sizeof c->schedule, "%s", schedule);
    c->lc = calloc((size_t)L, sizeof *c->lc);
    double **pre[] = { &c->pre_time, &c->pre_fwd_blocks, &c->pre_state, &c->pre_act, &c->pre_act_rc,
                       &c->pre_act_split, &c->pre_params, &c->pre_alloc };
    for (size_t a = 0; a < sizeof pre / sizeof pre[0]; a++)
        *pre[a] = calloc((size_t)L + 1, sizeof(double));
    c->comm = calloc((size_t)S, sizeof(double));
    c->inter = calloc((size_t)S, sizeof(int));
    c->inflight = calloc((size_t)S, sizeof(int));
    if (!c->lc || !c->pre_time || !c->pre_fwd_blocks || !c->pre_state || !c->pre_act || !c->pre_act_rc ||
        !c->pre_act_split || !c->pre_params || !c->pre_alloc || !c->comm || !c->inter || !c->inflight) {
        pt_part_ctx_destroy(c);
        return pt_fail(PT_ENOMEM, "out of host memory for the planner");
    }
    pt_status st = pt_cost_layers(cfg, B, T, dev, measured, c->lc);
    if (st == PT_OK)
        st = pt_cost_tp_split(cfg, B, T, tp, c->sp, dev, topo, measured, c->lc);
    if (st == PT_OK)
        st = pt_part_inflight_counts(c->schedule, P, V, M, c->inflight);
    if (st != PT_OK) {
        pt_part_ctx_destroy(c);
        return st;
    }
    for (int l = 0; l < L; l++) {
        const pt_layer_cost *x = &c->lc[l];
        const int is_block = l >= 1 && l <= cfg->n_layer;
        c->pre_time[l + 1] = c->pre_time[l] + x->t_fwd + x->t_bwd_input + x->t_bwd_weight;
        c->pre_fwd_blocks[l + 1] = c->pre_fwd_blocks[l] + (is_block ? x->t_fwd : 0.0);
        c->pre_state[l + 1] = c->pre_state[l] + x->state_bytes;
        c->pre_act[l + 1] = c->pre_act[l] + x->act_bytes;
        c->pre_act_rc[l + 1] = c->pre_act_rc[l] + x->act_bytes_recompute;
        c->pre_act_split[l + 1] = c->pre_act_split[l] + x->act_split_bytes;
        c->pre_params[l + 1] = c->pre_params[l] + (double)x->n_params;
        c->pre_alloc[l + 1] = c->pre_alloc[l] + (double)x->n_params_alloc;
    }
    const double sp_share = c->sp ? 1.0 / tp : 1.0; /* a TP rank's part of a (B,T,C) boundary tensor */
    c->nc_bytes = (double)B * T * cfg->n_embd * dev->act_elem_bytes * sp_share;
    c->boundary_act = 2.0 * c->nc_bytes;
    c->shard_boundary_act = 2.0 * (double)B * T * (cfg->n_embd + PT_XENT_STATS) * dev->act_elem_bytes * sp_share;
    c->fused_only = pt_part_sched_fused_only(c->schedule);
    /* Boundary k (after chunk k): inter-node when, in any replica, its two ranks sit on different
     * nodes. Every layer but the last head shard outputs (B,T,C) fp32, or (B,T,C+PT_XENT_STATS)
     * between head shards (head_split > 1). The DP needs a transfer time that does not depend on
     * the split, so every boundary is priced at the widest one: exact with an unsplit head, and
     * with a split head at most (C+5)/C of a block boundary's time (the per-boundary bytes the
     * simulator gets, boundary_bytes, are exact). */
    double bytes = 0;
    for (int l = 0; l < L; l++)
        bytes = c->lc[l].out_bytes > bytes ? c->lc[l].out_bytes : bytes;
    for (int k = 0; k + 1 < S; k++) {
        int r1, r2;
        place(c->schedule, P, V, k, &r1);
        place(c->schedule, P, V, k + 1, &r2);
        if (r1 == r2)
            continue; /* same rank: no transfer */
        int inter = 0;
        for (int d = 0; d < D && !inter; d++)
            inter = node_of(topo, (d * P + r1) * tp) != node_of(topo, (d * P + r2) * tp);
        c->inter[k] = inter;
        c->comm[k] = inter ? topo->inter_latency_s + bytes / topo->inter_bw_Bps
                           : topo->intra_latency_s + bytes / topo->intra_bw_Bps;
    }
    *out = c;
    return PT_OK;
}

void pt_part_ctx_destroy(pt_part_ctx *c)
{
    if (!c)
        return;
    free(c->inflight);
    free(c->inter);
    free(c->comm);
    free(c->pre_alloc);
    free(c->pre_params);
    free(c->pre_act_split);
    free(c->pre_act_rc);
    free(c->pre_act);
    free(c->pre_state);
    free(c->pre_fwd_blocks);
    free(c->pre_time);
    free(c->lc);
    free(c);
}

double pt_part_chunk_time(const pt_part_ctx *c, int k, int i, int j, int rc)
{
    double t = c->pre_time[j + 1] - c->pre_time[i];
    if (rc)
        t += c->pre_fwd_blocks[j + 1] - c->pre_fwd_blocks[i];
    if (k > 0)
        t += c->comm[k - 1];
    t += c->comm[k];
    return t;
}

double pt_part_chunk_slot_bytes(const pt_part_ctx *c, int i, int j, int rc)
{
    const int head0 = c->cfg->n_layer + 1; /* the first head layer (final layernorm) */
    double slot = rc ? c->pre_act_rc[j + 1] - c->pre_act_rc[i] : c->pre_act[j + 1] - c->pre_act[i];
    if (i > head0) /* the targets (counted with the first head layer otherwise), and the input
                    * h|stats with its gradient dh|lse: per slot whatever the schedule */
        return slot + 4.0 * c->B * c->T + c->shard_boundary_act;
    if (!c->fused_only)
        return slot + (i > 0 ? c->boundary_act : 0); /* the chunk's input and its gradient */
    /* Without split backward the inner gradients live in the chunk's shared area, the output's
     * gradient arrives in the (sent) output's buffer, and the input's gradient replaces the input
     * after the backward, except in a chunk starting at the head (its layernorm backward reads the
     * input while writing the gradient). */
    slot -= c->pre_act_split[j + 1] - c->pre_act_split[i];
    if (i > 0)
        slot += i == head0 ? c->boundary_act : c->nc_bytes;
    return slot;
}

double pt_part_chunk_mem_kinds(const pt_part_ctx *c, int k, int i, int j, int rc, double *kinds)
{
    int full = 0;
    const double tied = pt_part_chunk_tied_elems(c->cfg, i, j, &full) / c->tp; /* vocabulary-parallel */
    const double own = c->pre_alloc[j + 1] - c->pre_alloc[i];
    const double w = own + (full ? tied : 0.0); /* the model's flat parameters: what the optimizer steps */
    /* ZeRO-1: replica d's moments are pt_comm_segment(w, D, d), at most ceil(w / D) elements */
    const double opt = c->zero && c->D > 1 ? ceil(w / c->D) : w;
    kinds[PT_MEM_WEIGHTS] = 4.0 * w + c->dev->weight_copy_bytes * w;
    kinds[PT_MEM_GRADS] = 4.0 * (own + tied); /* a whole head matrix's gradient, or the tied twin */
    kinds[PT_MEM_OPTIM] = 8.0 * opt;
    kinds[PT_MEM_ACT] = c->inflight[k] * pt_part_chunk_slot_bytes(c, i, j, rc) +
                        pt_part_chunk_fixed_bytes_tp(c->cfg, c->B, c->T, c->dev->act_elem_bytes,
                                                     pt_part_stash_elem_bytes(c->dev), i, j, rc, c->fused_only,
                                                     c->tp, c->sp);
    kinds[PT_MEM_COMM] = 0;
    kinds[PT_MEM_OTHER] = 0;
    double m = 0;
    for (int q = 0; q < PT_MEM_KINDS; q++)
        m += kinds[q];
    return m;
}

double pt_part_chunk_mem(const pt_part_ctx *c, int k, int i, int j, int rc)
{
    double kinds[PT_MEM_KINDS];
    return pt_part_chunk_mem_kinds(c, k, i, j, rc, kinds);
}

double pt_part_rank_comm_bytes(const pt_part_ctx *c, int r)
{
    /* The link stages every send in a buffer of the largest stage-to-stage message (the runtime's
     * rt_msg_bytes: B*T times the width of the last head layer's input) and takes a new one only
     * when all it has are in flight, so the count depends on timing. A chunk's activation send of
     * micro-batch mb is done before the chunk frees mb's slot (its backward needs the gradient,
     * which needs the receiver to have the activation), so at most inflight[k] are in flight; a
     * gradient send to chunk k-1 at most inflight[k-1]. Runs reach that bound only when the
     * receiver falls behind (gpipe's back-to-back forwards on an oversubscribed machine); a
     * receiver that posts ahead keeps one send in flight while the next is staged, so pricing
     * counts min(bound, 2) per direction a chunk sends in (docs/training.md, "Memory per rank:
     * what is counted"). One stage: no pipeline sends. */
    if (c->P < 2)
        return 0;
    const double msg = (double)c->B * c->T * pt_model_boundary_width(c->cfg, c->L - 1) * 4.0 / (c->sp ? c->tp : 1);
    double n = 0;
    for (int k = 0; k < c->S; k++) {
        int rk, rn;
        place(c->schedule, c->P, c->V, k, &rk);
        if (rk != r)
            continue;
        if (k + 1 < c->S && (place(c->schedule, c->P, c->V, k + 1, &rn), rn != r))
            n += c->inflight[k] < 2 ? c->inflight[k] : 2;
        if (k > 0 && (place(c->schedule, c->P, c->V, k - 1, &rn), rn != r))
            n += c->inflight[k - 1] < 2 ? c->inflight[k - 1] : 2;
    }
    return n * msg;
}

/* ---- the dynamic program ---- */

typedef enum { OBJ_TIME, OBJ_PARAMS, OBJ_MEM } objective;

/* Cost of chunk k = layers i..j under the objective; recomputation options rc_lo..rc_hi; INFINITY
 * when nothing fits the per-chunk memory share `cap_chunk` (<= 0: no cap). *rc_out: the choice. */
static double chunk_cost(const pt_part_ctx *c, objective obj, int k, int i, int j, int rc_lo, int rc_hi,
                         double cap_chunk, int *rc_out)
{
    if (obj == OBJ_PARAMS) {
        *rc_out = rc_lo;
        return c->pre_params[j + 1] - c->pre_params[i];
    }
    double best = INFINITY;
    *rc_out = rc_lo;
    for (int rc = rc_lo; rc <= rc_hi; rc++) {
        const double mem = pt_part_chunk_mem(c, k, i, j, rc);
        if (cap_chunk > 0 && mem > cap_chunk)
            continue;
        const double v = obj == OBJ_TIME ? pt_part_chunk_time(c, k, i, j, rc) : mem;
        if (v < best) {
            best = v;
            *rc_out = rc;
        }
    }
    return best;
}

/* Minimises the largest chunk cost over contiguous splits of the L layers into S non-empty
 * chunks: best[k][j] = min_i max(best[k-1][i-1], cost(k, i..j)). O(S * L^2). Writes first/last/rc
 * and returns the optimum (INFINITY when nothing fits). */
static pt_status dp_minmax(const pt_part_ctx *c, objective obj, int rc_lo, int rc_hi, double cap_chunk, int *first,
                           int *last, int *rcs, double *value)
{
    const int S = c->S, L = c->L;
    if (S < 1 || L < S)
        return pt_fail(PT_EINVAL, "cannot split %d layers into %d chunks", L, S);
    double *best = malloc(sizeof(double) * (size_t)S * L);
    int *arg = malloc(sizeof(int) * (size_t)S * L);
    int *argrc = malloc(sizeof(int) * (size_t)S * L);
    if (!best || !arg || !argrc) {
        free(best);
        free(arg);
        free(argrc);
        return pt_fail(PT_ENOMEM, "out of host memory for the partition search (%d chunks x %d layers)", S, L);
    }
    /* best[k*L + j]: chunks 0..k cover layers 0..j. Chunk k needs j >= k and leaves S-1-k layers. */
    for (int k = 0; k < S; k++) {
        for (int j = 0; j < L; j++) {
            best[k * L + j] = INFINITY;
            arg[k * L + j] = -1;
            argrc[k * L + j] = 0;
            if (j < k || j > L - S + k)
                continue;
            if (k == 0) {
                int rc;
                best[j] = chunk_cost(c, obj, 0, 0, j, rc_lo, rc_hi, cap_chunk, &rc);
                arg[j] = 0;
                argrc[j] = rc;
                continue;
            }
            for (int i = j; i >= k; i--) {
                const double prev = best[(k - 1) * L + i - 1];
                if (prev >= best[k * L + j])
                    continue; /* cannot improve */
                int rc;
                const double cost = chunk_cost(c, obj, k, i, j, rc_lo, rc_hi, cap_chunk, &rc);
                const double v = prev > cost ? prev : cost;
                if (v < best[k * L + j]) {
                    best[k * L + j] = v;
                    arg[k * L + j] = i;
                    argrc[k * L + j] = rc;
                }
            }
        }
    }
    *value = best[(S - 1) * L + L - 1];
    if (isfinite(*value)) {
        int j = L - 1;
        for (int k = S - 1; k >= 0; k--) {
            const int i = arg[k * L + j];
            first[k] = i;
            last[k] = j;
            rcs[k] = argrc[k * L + j];
            j = i - 1;
        }
    }
    free(best);
    free(arg);
    free(argrc);
    return PT_OK;
}

/* With V > 1 a rank runs several chunks, so the pace is set by the largest per-rank SUM of chunk
 * times, which the chunk-wise minimax above does not see (zbv's rank 0 holds both the embedding
 * and the head). Local search from the DP's split: move one layer across one boundary at a time
 * while (max rank time, sum of squared rank times) decreases lexicographically and every chunk
 * still fits. Terminates: the pair strictly decreases over a finite set of splits. */
static double rank_times(const pt_part_ctx *c, const int *first, const int *last, const int *rc, double *rt,
                         double *sumsq)
{
    memset(rt, 0, sizeof(double) * (size_t)c->P);
    for (int k = 0; k < c->S; k++) {
        int r;
        place(c->schedule, c->P, c->V, k, &r);
        rt[r] += pt_part_chunk_time(c, k, first[k], last[k], rc[k]);
    }
    double mx = 0, sq = 0;
    for (int r = 0; r < c->P; r++) {
        mx = rt[r] > mx ? rt[r] : mx;
        sq += rt[r] * rt[r];
    }
    *sumsq = sq;
    return mx;
}

/* Copies p's split (first, last, recompute) to a new array when V > 1; *out NULL otherwise. */
static pt_status keep_split(const pt_part_ctx *c, const pt_plan *p, int **out)
{
    *out = NULL;
    if (c->V == 1)
        return PT_OK;
    int *a = malloc(sizeof(int) * 3 * (size_t)c->S);
    if (!a)
        return pt_fail(PT_ENOMEM, "out of host memory refining a plan");
    memcpy(a, p->first_layer, sizeof(int) * (size_t)c->S);
    memcpy(a + c->S, p->last_layer, sizeof(int) * (size_t)c->S);
    memcpy(a + 2 * c->S, p->recompute, sizeof(int) * (size_t)c->S);
    *out = a;
    return PT_OK;
}

static pt_status refine_ranks(const pt_part_ctx *c, int *first, int *last, int *rc, int rc_lo, int rc_hi,
                              double cap_chunk)
{
    if (c->V == 1)
        return PT_OK;
    double *rt = malloc(sizeof(double) * (size_t)c->P);
    if (!rt)
        return pt_fail(PT_ENOMEM, "out of host memory refining a plan");
    double best_sq, best = rank_times(c, first, last, rc, rt, &best_sq);
    int improved = 1;
    for (int iter = 0; improved && iter < 100 * c->L; iter++) {
        improved = 0;
        for (int k = 0; k + 1 < c->S; k++) {
            for (int dir = -1; dir <= 1; dir += 2) {
                const int nl = last[k] + dir; /* new last layer of chunk k */
                if (nl < first[k] || nl + 1 > last[k + 1])
                    continue;
                const int old_rc0 = rc[k], old_rc1 = rc[k + 1];
                int rc0, rc1;
                if (!isfinite(chunk_cost(c, OBJ_TIME, k, first[k], nl, rc_lo, rc_hi, cap_chunk, &rc0)) ||
                    !isfinite(chunk_cost(c, OBJ_TIME, k + 1, nl + 1, last[k + 1], rc_lo, rc_hi, cap_chunk, &rc1)))
                    continue;
                last[k] = nl;
                first[k + 1] = nl + 1;
                rc[k] = rc0;
                rc[k + 1] = rc1;
                double sq, v = rank_times(c, first, last, rc, rt, &sq);
                if (v < best || (v == best && sq < best_sq)) {
                    best = v;
                    best_sq = sq;
                    improved = 1;
                } else {
                    last[k] = nl - dir;
                    first[k + 1] = nl - dir + 1;
                    rc[k] = old_rc0;
                    rc[k + 1] = old_rc1;
                }
            }
        }
    }
    free(rt);
    return PT_OK;
}

/* ---- pricing ---- */

#ifdef PT_PARTITION_HAVE_SCHEDULE
/* Step time and bubble from the schedule simulator; on failure the caller keeps the closed form. */
static pt_status simulate_plan(const pt_part_ctx *c, const pt_plan *p, double *step, double *bubble)
{
    pt_schedule *s = NULL;
    pt_sim_costs sc;
    memset(&sc, 0, sizeof sc);
    const int S = c->S;
    double *arr = calloc((size_t)S * 6, sizeof(double));
    if (!arr)
        return pt_fail(PT_ENOMEM, "out of host memory for the simulator's costs");
    sc.n_vstages = S;
    sc.f = arr;
    sc.b = arr + S;
    sc.i = arr + 2 * S;
    sc.w = arr + 3 * S;
    sc.act_bytes = arr + 4 * S;
    sc.boundary_bytes = arr + 5 * S;
    for (int k = 0; k < S; k++) {
        const int i = p->first_layer[k], j = p->last_layer[k];
        double f = 0, bi = 0, bw = 0;
        for (int l = i; l <= j; l++) {
            f += c->lc[l].t_fwd;
            bi += c->lc[l].t_bwd_input;
            bw += c->lc[l].t_bwd_weight;
        }
        if (p->recompute[k])
            bi += c->pre_fwd_blocks[j + 1] - c->pre_fwd_blocks[i];
        sc.f[k] = f;
        sc.i[k] = bi;
        sc.w[k] = bw;
        sc.b[k] = bi + bw;
        sc.act_bytes[k] = pt_part_chunk_slot_bytes(c, i, j, p->recompute[k]);
        sc.boundary_bytes[k] = k + 1 < S ? c->lc[j].out_bytes : 0;
    }
    /* One link figure for the simulator: the slowest boundary's. */
    int any_inter = 0;
    for (int k = 0; k + 1 < S; k++)
        any_inter |= c->inter[k];
    sc.link_latency_s = any_inter ? c->topo->inter_latency_s : c->topo->intra_latency_s;
    sc.link_bandwidth_Bps = any_inter ? c->topo->inter_bw_Bps : c->topo->intra_bw_Bps;
    pt_status st = pt_sched_generate(p->schedule, c->P, c->V, c->M, &sc, &s);
    if (st == PT_OK) {
        pt_sim_result r;
        memset(&r, 0, sizeof r);
        st = pt_sched_simulate(s, &sc, &r);
        if (st == PT_OK) {
            *step = r.step_time;
            *bubble = r.bubble_overall;
        }
        pt_sim_result_free(&r);
    }
    pt_sched_destroy(s);
    free(arr);
    return st;
}
#endif

/* Parameter elements of a chunk holding layers i..j that are all-reduced across replicas and
 * stepped by the optimizer: its layers' own, plus the tied wte copy of a chunk with head layers
 * but no embedding (beside the embedding the head's twin gradient is added into wte's before
 * either, so it is neither reduced nor stepped on its own). */
static double chunk_stepped_elems(const pt_part_ctx *c, int i, int j)
{
    int full = 0;
    const double tied = pt_part_chunk_tied_elems(c->cfg, i, j, &full) / c->tp;
    return c->pre_alloc[j + 1] - c->pre_alloc[i] + (full ? tied : 0.0);
}

/* Fills p's predictions from the context; `simulate`: use the schedule simulator when built. */
static pt_status price(const pt_part_ctx *c, pt_plan *p, int simulate)
{
    const int P = c->P, V = c->V, S = c->S, D = c->D;
    double rank_t[4096];
    double *rt = P <= 4096 ? rank_t : calloc((size_t)P, sizeof(double));
    if (!rt)
        return pt_fail(PT_ENOMEM, "out of host memory pricing a plan");
    memset(rt, 0, sizeof(double) * (size_t)P);
    memset(p->pred_rank_mem_bytes, 0, sizeof(double) * (size_t)P);
    memset(p->pred_rank_mem_kind, 0, sizeof(double) * (size_t)P * PT_MEM_KINDS);
    p->zero = c->zero;
    p->n_tp = c->tp;
    p->sp = c->sp;
    double f_sum = 0, i_sum = 0, w_sum = 0;
    p->n_params_total = 0;
    p->head_split = pt_model_head_layers(c->cfg);
    for (int k = 0; k < S; k++) {
        const int i = p->first_layer[k], j = p->last_layer[k], rc = p->recompute[k];
        int r = 0, chunk = 0;
        pt_plan_vstage_place(p, k, &r, &chunk);
        p->pred_time_s[k] = pt_part_chunk_time(c, k, i, j, rc);
        double kinds[PT_MEM_KINDS];
        p->pred_mem_bytes[k] = pt_part_chunk_mem_kinds(c, k, i, j, rc, kinds);
        for (int q = 0; q < PT_MEM_KINDS; q++)
            p->pred_rank_mem_kind[(size_t)r * PT_MEM_KINDS + q] += kinds[q];
        p->n_params[k] = (int64_t)(c->pre_params[j + 1] - c->pre_params[i]);
        p->n_params_total += p->n_params[k];
        p->boundary_inter[k] = c->inter[k];
        rt[r] += p->pred_time_s[k];
        p->pred_rank_mem_bytes[r] += p->pred_mem_bytes[k];
        for (int l = i; l <= j; l++) {
            f_sum += c->lc[l].t_fwd;
            i_sum += c->lc[l].t_bwd_input;
            w_sum += c->lc[l].t_bwd_weight;
        }
    }
    for (int r = 0; r < P; r++) { /* the link's buffers are the rank's, not a chunk's */
        const double cb = pt_part_rank_comm_bytes(c, r);
        p->pred_rank_mem_kind[(size_t)r * PT_MEM_KINDS + PT_MEM_COMM] += cb;
        p->pred_rank_mem_bytes[r] += cb;
    }
    double t_max = 0, t_sum = 0;
    for (int r = 0; r < P; r++) {
        t_max = rt[r] > t_max ? rt[r] : t_max;
        t_sum += rt[r];
    }
    /* Closed form: the slowest rank runs M micro-batches back to back; filling and draining the
     * pipeline costs the other ranks' work once, divided by V for interleaving. Zero-bubble
     * schedules fill with F + I and drain W late: the fill shrinks by (F + I - W) / (F + I + W). */
    double fill = (t_sum - t_max) / V;
    if (strncmp(p->schedule, "zb", 2) == 0 && f_sum + i_sum + w_sum > 0) {
        const double ratio = (f_sum + i_sum - w_sum) / (f_sum + i_sum + w_sum);
        fill *= ratio > 0 ? ratio : 0;
    }
    double step = c->M * t_max + fill;
    double bubble = step > 0 ? 1.0 - c->M * t_sum / (P * step) : 0;
#ifdef PT_PARTITION_HAVE_SCHEDULE
    if (simulate) {
        double s_step = 0, s_bubble = 0;
        if (simulate_plan(c, p, &s_step, &s_bubble) == PT_OK && s_step > 0) {
            step = s_step;
            bubble = s_bubble;
        } else {
            pt_clear_error(); /* a schedule the generators cannot make (e.g. M too small): closed form */
        }
    }
#else
    (void)simulate;
#endif
    /* Data-parallel gradient all-reduce (ring): 2 (D-1)/D of the rank's fp32 gradients, at the
     * slowest link among its replicas; not overlapped with the pipeline (conservative). */
    double comm = 0;
    if (D > 1) {
        for (int r = 0; r < P; r++) {
            double bytes = 0;
            for (int k = 0; k < S; k++) {
                int rr, chunk;
                pt_plan_vstage_place(p, k, &rr, &chunk);
                if (rr == r)
                    bytes += 4.0 * chunk_stepped_elems(c, p->first_layer[k], p->last_layer[k]);
            }
            const int inter = node_of(c->topo, r * c->tp) != node_of(c->topo, ((D - 1) * P + r) * c->tp);
            const double bw = inter ? c->topo->inter_bw_Bps : c->topo->intra_bw_Bps;
            const double lat = inter ? c->topo->inter_latency_s : c->topo->intra_latency_s;
            const double t = 2.0 * (D - 1) / D * bytes / bw + 2.0 * (D - 1) * lat;
            comm = t > comm ? t : comm;
        }
    }
    if (rt != rank_t)
        free(rt);
    /* AdamW: read weights, gradients, m, v and write weights, m, v (and the bf16 copy) of every
     * parameter the rank holds, at memory bandwidth; ranks step in parallel, the slowest counts. */
    double optim = 0;
    if (c->dev->mem_bw_Bps > 0) {
        const double per_param = 28.0 + c->dev->weight_copy_bytes;
        for (int r = 0; r < P; r++) {
            double n = 0;
            for (int k = 0; k < S; k++) {
                int rr, chunk;
                pt_plan_vstage_place(p, k, &rr, &chunk);
                if (rr == r)
                    n += chunk_stepped_elems(c, p->first_layer[k], p->last_layer[k]);
            }
            if (c->zero && D > 1) /* ZeRO-1: each replica steps its slice */
                n = ceil(n / D);
            const double t = n * per_param / c->dev->mem_bw_Bps;
            optim = t > optim ? t : optim;
        }
    }
    /* TP collectives of the slowest rank's chunks over the step (inside the step above): M times
     * each chunk's forward (twice for recomputed blocks) and backward-input collectives */
    double tp_comm = 0;
    if (c->tp > 1) {
        for (int r = 0; r < P; r++) {
            double t = 0;
            for (int k = 0; k < S; k++) {
                int rr, chunk;
                pt_plan_vstage_place(p, k, &rr, &chunk);
                if (rr != r)
                    continue;
                for (int l = p->first_layer[k]; l <= p->last_layer[k]; l++) {
                    const int is_block = l >= 1 && l <= c->cfg->n_layer;
                    t += c->lc[l].t_tp_fwd * (p->recompute[k] && is_block ? 2.0 : 1.0) + c->lc[l].t_tp_bwd;
                }
            }
            t *= c->M;
            tp_comm = t > tp_comm ? t : tp_comm;
        }
    }
    p->pred_tp_comm_s = tp_comm;
    p->pred_comm_s = comm;
    p->pred_optim_s = optim;
    p->pred_step_time_s = step + comm + optim;
    p->pred_bubble = bubble;
    const double tokens = (double)D * c->M * c->B * c->T;
    p->pred_tokens_per_s = p->pred_step_time_s > 0 ? tokens / p->pred_step_time_s : 0;
    p->pred_mfu = p->pred_step_time_s > 0
                      ? pt_cost_step_flops(c->cfg, c->T, tokens) /
                            (p->pred_step_time_s * P * c->tp * D * c->dev->peak_flops)
                      : 0;
    return PT_OK;
}

static void plan_fill_header(pt_plan *p, const pt_part_ctx *c, const char *method)
{
    p->micro_batch_size = c->B;
    p->n_microbatches = c->M;
    p->seq_len = c->T;
    snprintf(p->schedule, sizeof p->schedule, "%s", c->schedule);
    snprintf(p->method, sizeof p->method, "%s", method);
    snprintf(p->device, sizeof p->device, "%s", c->dev->name);
    p->n_nodes = c->topo->n_nodes;
    p->devices_per_node = c->topo->devices_per_node;
}

pt_status pt_plan_price(pt_plan *p, const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                        const pt_layer_times *measured)
{
    const int L = pt_model_n_layers(cfg);
    for (int k = 0; k < p->n_vstages; k++) {
        const int want = k == 0 ? 0 : p->last_layer[k - 1] + 1;
        if (p->first_layer[k] != want || p->last_layer[k] < p->first_layer[k])
            return pt_fail(PT_EINVAL, "plan chunk %d holds layers %d..%d; chunks must be contiguous and non-empty", k,
                           p->first_layer[k], p->last_layer[k]);
    }
    if (p->last_layer[p->n_vstages - 1] != L - 1)
        return pt_fail(PT_EINVAL, "plan ends at layer %d but %s has %d layers; the last chunk must hold the head",
                       p->last_layer[p->n_vstages - 1], cfg->name, L);
    PT_CHECK(pt_part_sched_check_chunks(p->schedule, p->n_chunks));
    const int tp = p->n_tp > 0 ? p->n_tp : 1;
    if (p->n_stages * tp * p->n_replicas > topo->n_nodes * topo->devices_per_node)
        return pt_fail(PT_EINVAL,
                       "plan needs %d stages x %d tensor x %d replicas = %d devices but the topology has %d x %d",
                       p->n_stages, tp, p->n_replicas, p->n_stages * tp * p->n_replicas, topo->n_nodes,
                       topo->devices_per_node);
    const int T = p->seq_len > 0 ? p->seq_len : cfg->max_seq_len;
    pt_part_ctx *c;
    PT_CHECK(pt_part_ctx_create_tp(cfg, dev, topo, measured, p->n_stages, p->n_chunks, p->n_replicas,
                                   p->micro_batch_size, p->n_microbatches, T, p->schedule, tp, p->sp, &c));
    c->zero = p->zero ? 1 : 0;
    char method[16];
    snprintf(method, sizeof method, "%s", p->method);
    plan_fill_header(p, c, method);
    pt_status st = price(c, p, 1);
    pt_part_ctx_destroy(c);
    return st;
}

/* ---- making plans ---- */

void pt_plan_request_init(pt_plan_request *rq)
{
    memset(rq, 0, sizeof *rq);
    rq->method = "time";
    rq->recompute = -1;
}

static void uniform_split(int L, int S, int *first, int *last)
{
    const int base = L / S, extra = L % S;
    int at = 0;
    for (int k = 0; k < S; k++) {
        const int n = base + (k < extra ? 1 : 0);
        first[k] = at;
        last[k] = at + n - 1;
        at += n;
    }
}

/* Smallest cap a request needs with P stages: the memory-minimising split (recomputation allowed). */
static pt_status min_mem_for(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                             const pt_layer_times *measured, int P, int V, int D, int B, int M, int T,
                             const char *schedule, int rc_lo, int rc_hi, int zero, int tp, int sp, double *need)
{
    pt_part_ctx *c;
    PT_CHECK(pt_part_ctx_create_tp(cfg, dev, topo, measured, P, V, D, B, M, T, schedule, tp, sp, &c));
    c->zero = zero;
    int *buf = malloc(sizeof(int) * 3 * (size_t)c->S);
    if (!buf) {
        pt_part_ctx_destroy(c);
        return pt_fail(PT_ENOMEM, "out of host memory for the partition search");
    }
    double v = INFINITY;
    pt_status st = dp_minmax(c, OBJ_MEM, rc_lo, rc_hi, 0, buf, buf + c->S, buf + 2 * c->S, &v);
    double comm = 0; /* each chunk gets (cap - the rank's link buffers) / V */
    for (int r = 0; r < P; r++)
        comm = pt_part_rank_comm_bytes(c, r) > comm ? pt_part_rank_comm_bytes(c, r) : comm;
    *need = v * V + comm;
    free(buf);
    pt_part_ctx_destroy(c);
    return st;
}

/* The one-line error for a request nothing fits: the smallest device count (more stages, same
 * replicas) that fits, and the memory per device the requested stage count would need. */
static pt_status infeasible(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                            const pt_layer_times *measured, const char *method, int P, int V, int D, int B, int M,
                            int T, const char *schedule, int rc_lo, int rc_hi, double cap, int zero, int tp, int sp)
{
    const int L = pt_model_n_layers(cfg);
    double need = INFINITY;
    pt_status st =
        min_mem_for(cfg, dev, topo, measured, P, V, D, B, M, T, schedule, rc_lo, rc_hi, zero, tp, sp, &need);
    if (st != PT_OK)
        return st;
    int fit_P = 0;
    for (int P2 = P + 1; P2 * V <= L && !fit_P; P2++) {
        double n2;
        pt_topology t2 = *topo;
        t2.n_nodes = (P2 * tp * D + topo->devices_per_node - 1) / topo->devices_per_node;
        if (min_mem_for(cfg, dev, &t2, measured, P2, V, D, B, M, T, schedule, rc_lo, rc_hi, zero, tp, sp, &n2) ==
                PT_OK &&
            n2 <= cap)
            fit_P = P2;
    }
    const char *name = cfg->name[0] ? cfg->name : "the model";
    char shape[96], tps[32] = "";
    if (tp > 1)
        snprintf(tps, sizeof tps, " x %d tensor", tp);
    snprintf(shape, sizeof shape, "%d stage(s)%s x %d replica(s)", P, tps, D);
    /* with replicas, say when sharding the AdamW moments (ZeRO-1) is what fits these devices */
    double need_z = INFINITY;
    if (!zero && D > 1 &&
        min_mem_for(cfg, dev, topo, measured, P, V, D, B, M, T, schedule, rc_lo, rc_hi, 1, tp, sp, &need_z) == PT_OK &&
        need_z <= cap)
        return pt_fail(PT_ENOMEM,
                       "no %s plan of %s fits %d device(s) of %.2f GB (%s, %s, micro-batch %d x "
                       "%d) with every replica holding all its AdamW moments: needs %.2f GB per device; with --zero 1 "
                       "(each holds 1/D) it needs %.2f GB and fits",
                       method, name, P * tp * D, cap / 1e9, schedule, shape, B, T, need / 1e9, need_z / 1e9);
    pt_clear_error();
    if (fit_P)
        return pt_fail(PT_ENOMEM,
                       "no %s plan of %s fits %d device(s) of %.2f GB (%s, %s, micro-batch %d x %d): "
                       "needs at least %d devices (%d stages%s x %d replicas), or %.2f GB per device%s",
                       method, name, P * tp * D, cap / 1e9, schedule, shape, B, T, fit_P * tp * D, fit_P, tps, D,
                       need / 1e9,
                       tp < topo->devices_per_node && pt_plan_check_tp(cfg, 2 * tp, topo->devices_per_node) == PT_OK
                           ? ", or each layer split over more tensor-parallel ranks (--tp, inside a node)"
                           : "");
    return pt_fail(PT_ENOMEM,
                   "no %s plan of %s fits %d device(s) of %.2f GB (%s, %s, micro-batch %d x %d), "
                   "not even with the most stages: needs %.2f GB per device; %s",
                   method, name, P * tp * D, cap / 1e9, schedule, shape, B, T, need / 1e9,
                   B > 1  ? "lower the micro-batch size"
                   : tp < 8 ? "shorten the sequences, use devices with more memory, or split each layer over more "
                              "tensor-parallel ranks (--tp, up to the devices per node)"
                            : "shorten the sequences or use devices with more memory");
}

/* One fixed point (P, V, D, B, M, schedule): split by `method` and price. *out NULL with PT_OK
 * when `quiet_infeasible` and nothing fits. */
static pt_status make_fixed(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                            const pt_layer_times *measured, const char *method, int P, int V, int D, int B, int M,
                            int T, const char *schedule, int recompute, int zero, int tp, int sp, double cap,
                            int quiet_infeasible, int simulate, pt_plan **out)
{
    *out = NULL;
    int *dp_split = NULL; /* the DP's split before refinement (V > 1) */
    pt_part_ctx *c;
    PT_CHECK(pt_part_ctx_create_tp(cfg, dev, topo, measured, P, V, D, B, M, T, schedule, tp, sp, &c));
    c->zero = zero ? 1 : 0;
    pt_plan *p = NULL;
    pt_status st = pt_plan_create(P, V, D, &p);
    if (st != PT_OK)
        goto done;
    plan_fill_header(p, c, method);
    const int rc_lo = recompute == 1 ? 1 : 0, rc_hi = recompute == 0 ? 0 : 1;
    double comm = 0; /* the link's buffers come off the cap before it is shared by the chunks */
    for (int r = 0; r < P; r++)
        comm = pt_part_rank_comm_bytes(c, r) > comm ? pt_part_rank_comm_bytes(c, r) : comm;
    const double cap_chunk = (cap - comm) / V > 0 ? (cap - comm) / V : DBL_MIN;
    double v = 0;
    if (strcmp(method, "uniform") == 0) {
        uniform_split(c->L, c->S, p->first_layer, p->last_layer);
    } else if (strcmp(method, "params") == 0) {
        PT_TRY(dp_minmax(c, OBJ_PARAMS, 0, 0, 0, p->first_layer, p->last_layer, p->recompute, &v), done);
    } else if (strcmp(method, "time") == 0) {
        PT_TRY(dp_minmax(c, OBJ_TIME, rc_lo, rc_lo, 0, p->first_layer, p->last_layer, p->recompute, &v), done);
        PT_TRY(keep_split(c, p, &dp_split), done);
        PT_TRY(refine_ranks(c, p->first_layer, p->last_layer, p->recompute, rc_lo, rc_lo, 0), done);
    } else { /* memory, auto */
        PT_TRY(dp_minmax(c, OBJ_TIME, rc_lo, rc_hi, cap_chunk, p->first_layer, p->last_layer, p->recompute, &v), done);
        if (!isfinite(v))
            goto nofit;
        PT_TRY(keep_split(c, p, &dp_split), done);
        PT_TRY(refine_ranks(c, p->first_layer, p->last_layer, p->recompute, rc_lo, rc_hi, cap_chunk), done);
    }
    if (strcmp(method, "memory") != 0 && strcmp(method, "auto") != 0) {
        /* Balanced without regard to memory: recompute (when allowed) the chunks that do not fit. */
        for (int k = 0; k < c->S; k++) {
            p->recompute[k] = rc_lo;
            if (rc_hi > rc_lo && pt_part_chunk_mem(c, k, p->first_layer[k], p->last_layer[k], 0) > cap_chunk)
                p->recompute[k] = 1;
        }
    }
    PT_TRY(price(c, p, simulate), done);
    if (dp_split) {
        /* the refinement balances rank sums; keep the chunk-minimax split when the step (simulated
         * for final plans) says it was better after all */
        pt_plan *q = NULL;
        PT_TRY(pt_plan_create(P, V, D, &q), done);
        plan_fill_header(q, c, method);
        memcpy(q->first_layer, dp_split, sizeof(int) * (size_t)c->S);
        memcpy(q->last_layer, dp_split + c->S, sizeof(int) * (size_t)c->S);
        memcpy(q->recompute, dp_split + 2 * c->S, sizeof(int) * (size_t)c->S);
        st = price(c, q, simulate);
        if (st == PT_OK && q->pred_step_time_s < p->pred_step_time_s) {
            pt_plan *t = p;
            p = q;
            q = t;
        }
        pt_plan_destroy(q);
        if (st != PT_OK)
            goto done;
    }
    if (pt_plan_check_memory(p, cap) != PT_OK)
        goto nofit;
    *out = p;
    p = NULL;
    goto done;
nofit:
    if (quiet_infeasible) {
        st = PT_OK;
    } else if (strcmp(method, "memory") != 0 && strcmp(method, "auto") != 0) {
        /* a fixed split that does not fit: say whether a memory-aware split would */
        double need = INFINITY;
        st = min_mem_for(cfg, dev, topo, measured, P, V, D, B, M, T, schedule, rc_lo, rc_hi, c->zero, tp, sp, &need);
        if (st == PT_OK && need <= cap) {
            int worst = 0;
            for (int r = 1; r < P; r++)
                if (p->pred_rank_mem_bytes[r] > p->pred_rank_mem_bytes[worst])
                    worst = r;
            st = pt_fail(PT_ENOMEM,
                         "the %s split of %s needs %.2f GB on stage %d but a device has %.2f GB; --partition memory "
                         "finds a split of %d stages that needs %.2f GB",
                         method, cfg->name[0] ? cfg->name : "the model", p->pred_rank_mem_bytes[worst] / 1e9, worst,
                         cap / 1e9, P, need / 1e9);
        } else if (st == PT_OK) {
            st = infeasible(cfg, dev, topo, measured, method, P, V, D, B, M, T, schedule, rc_lo, rc_hi, cap, c->zero, tp,
                            sp);
        }
    } else {
        st = infeasible(cfg, dev, topo, measured, method, P, V, D, B, M, T, schedule, rc_lo, rc_hi, cap, c->zero, tp, sp);
    }
done:
    free(dp_split);
    pt_plan_destroy(p);
    pt_part_ctx_destroy(c);
    return st;
}

/* ---- auto ---- */

typedef struct {
    int P, V, D, B, M, tp;
    const char *schedule;
    double tokens_per_s;
} candidate;

static int same_candidate(const candidate *a, const candidate *b)
{
    return a->P == b->P && a->V == b->V && a->D == b->D && a->B == b->B && a->M == b->M && a->tp == b->tp &&
           strcmp(a->schedule, b->schedule) == 0;
}

static int resolve_M(const pt_plan_request *rq, int P, int D, int B, int default_gb)
{
    if (rq->n_microbatches > 0)
        return rq->n_microbatches;
    const int gb = rq->global_batch > 0 ? rq->global_batch : default_gb;
    if (gb > 0) {
        if (gb % (D * B) != 0)
            return 0;
        return gb / (D * B);
    }
    return 4 * P;
}

static pt_status make_auto(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                           const pt_layer_times *measured, const pt_plan_request *rq, int G, int T, double cap,
                           pt_plan **out)
{
    static const char *const all_scheds[] = { "1f1b", "interleaved", "zb-h1", "zbv", "gpipe", "zb-h2" };
    const int n_scheds = rq->schedule ? 1 : 6;
    const int L = pt_model_n_layers(cfg);
    const int default_gb = rq->global_batch > 0 ? rq->global_batch : 2 * G;
    enum { TOP = 4 };
    candidate top[TOP], sched_best[6];
    int sched_fit[6] = { 0 };
    int n_top = 0;
    int tried = 0;
    /* tensor-parallel sizes searched: the one asked for, else 1, 2, 4, 8 where the model and the
     * node allow (pt_plan_check_tp) and they divide the devices */
    int tps[4], n_tps = 0;
    if (rq->n_tp > 0) {
        PT_CHECK(pt_plan_check_tp(cfg, rq->n_tp, topo->devices_per_node));
        if (G % rq->n_tp != 0)
            return pt_fail(PT_EINVAL, "--tp %d does not divide the %d devices; use a T that divides --gpus", rq->n_tp, G);
        tps[n_tps++] = rq->n_tp;
    } else {
        for (int t = 1; t <= 8; t *= 2) {
            if (G % t == 0 && pt_plan_check_tp(cfg, t, topo->devices_per_node) == PT_OK)
                tps[n_tps++] = t;
        }
        pt_clear_error();
    }
    for (int si = 0; si < n_scheds; si++) {
        const char *sched = rq->schedule ? rq->schedule : all_scheds[si];
        const int V = rq->n_chunks > 0 ? rq->n_chunks : pt_part_sched_default_chunks(sched);
        PT_CHECK(pt_part_sched_check_chunks(sched, V));
        for (int ti = 0; ti < n_tps; ti++) {
        const int tp = tps[ti];
        for (int P = 1; P <= G / tp && P * V <= L; P++) {
            if ((G / tp) % P != 0 || (rq->n_stages > 0 && P != rq->n_stages))
                continue;
            const int D = G / tp / P;
            if (rq->n_replicas > 0 && D != rq->n_replicas)
                continue;
            for (int B = 1; B <= 64; B *= 2) {
                if (rq->micro_batch_size > 0 && B != rq->micro_batch_size)
                    continue;
                const int M = resolve_M(rq, P, D, B, rq->n_microbatches > 0 ? 0 : default_gb);
                if (M < 1)
                    continue;
                pt_plan *p = NULL;
                tried++;
                PT_CHECK(make_fixed(cfg, dev, topo, measured, "auto", P, V, D, B, M, T, sched, rq->recompute, rq->zero,
                                    tp, rq->sp, cap, 1, 0, &p));
                if (!p)
                    continue;
                candidate cd = { P, V, D, B, M, tp, sched, p->pred_tokens_per_s };
                pt_plan_destroy(p);
                if (!sched_fit[si] || cd.tokens_per_s > sched_best[si].tokens_per_s) {
                    sched_fit[si] = 1;
                    sched_best[si] = cd;
                }
                /* keep the TOP best by closed-form tokens/s */
                int pos = n_top < TOP ? n_top++ : TOP;
                if (pos == TOP) {
                    if (cd.tokens_per_s <= top[TOP - 1].tokens_per_s)
                        continue;
                    pos = TOP - 1;
                }
                top[pos] = cd;
                while (pos > 0 && top[pos].tokens_per_s > top[pos - 1].tokens_per_s) {
                    candidate t = top[pos];
                    top[pos] = top[pos - 1];
                    top[pos - 1] = t;
                    pos--;
                }
            }
        }
        }
    }
    if (n_top == 0) {
        if (tried == 0)
            return pt_fail(PT_EINVAL,
                           "auto found no (stages, micro-batch) combination for %d devices and %d layers; check --gpus, "
                           "--global-batch (must divide into replicas x micro-batch size) and --micro-batches",
                           G, L);
        /* report against the most memory-friendly shape the request allows: the stages and
         * micro-batch size asked for, else the most stages 1f1b allows and B = 1 */
        const char *sched = rq->schedule ? rq->schedule : "1f1b";
        const int V = rq->n_chunks > 0 ? rq->n_chunks : pt_part_sched_default_chunks(sched);
        const int tp = tps[n_tps - 1]; /* the widest split searched: the least memory a layer needs */
        const int Gs = G / tp;
        int P = 1;
        for (int q = 1; q <= Gs && q * V <= L; q++)
            if (Gs % q == 0)
                P = q;
        if (rq->n_stages > 0)
            P = rq->n_stages;
        const int B = rq->micro_batch_size > 0 ? rq->micro_batch_size : 1;
        while (P > 1 && P * V > L)
            P--;
        const int D = Gs / P > 0 ? Gs / P : 1;
        int M = resolve_M(rq, P, D, B, default_gb);
        if (M < 1)
            M = 1;
        return infeasible(cfg, dev, topo, measured, "auto", P, V, D, B, M, T, sched, rq->recompute == 1,
                          rq->recompute == 0 ? 0 : 1, cap, rq->zero, tp, rq->sp);
    }
    /* Simulate the best few overall and the best of every schedule; keep the fastest. */
    candidate sim[TOP + 6];
    int n_sim = 0;
    for (int t = 0; t < n_top; t++)
        sim[n_sim++] = top[t];
    for (int si = 0; si < n_scheds; si++) {
        if (!sched_fit[si])
            continue;
        int dup = 0;
        for (int t = 0; t < n_sim; t++)
            dup |= same_candidate(&sim[t], &sched_best[si]);
        if (!dup)
            sim[n_sim++] = sched_best[si];
    }
    pt_plan *best = NULL;
    pt_plan_candidate found[6];
    memset(found, 0, sizeof found);
    for (int si = 0; si < n_scheds; si++)
        snprintf(found[si].schedule, sizeof found[si].schedule, "%s", rq->schedule ? rq->schedule : all_scheds[si]);
    for (int t = 0; t < n_sim; t++) {
        pt_plan *p = NULL;
        pt_status st = make_fixed(cfg, dev, topo, measured, "auto", sim[t].P, sim[t].V, sim[t].D, sim[t].B, sim[t].M, T,
                                  sim[t].schedule, rq->recompute, rq->zero, sim[t].tp, rq->sp, cap, 1, 1, &p);
        if (st != PT_OK) {
            pt_plan_destroy(best);
            return st;
        }
        if (!p)
            continue;
        for (int si = 0; si < n_scheds; si++) {
            pt_plan_candidate *f = &found[si];
            if (strcmp(f->schedule, p->schedule) != 0 || (f->fits && f->pred_tokens_per_s >= p->pred_tokens_per_s))
                continue;
            f->fits = 1;
            f->n_stages = p->n_stages;
            f->n_chunks = p->n_chunks;
            f->n_replicas = p->n_replicas;
            f->n_tp = p->n_tp;
            f->micro_batch_size = p->micro_batch_size;
            f->n_microbatches = p->n_microbatches;
            f->n_recompute = 0;
            f->pred_max_mem_bytes = 0;
            for (int k = 0; k < p->n_vstages; k++)
                f->n_recompute += p->recompute[k];
            for (int r = 0; r < p->n_stages; r++)
                if (p->pred_rank_mem_bytes[r] > f->pred_max_mem_bytes)
                    f->pred_max_mem_bytes = p->pred_rank_mem_bytes[r];
            f->pred_step_time_s = p->pred_step_time_s;
            f->pred_bubble = p->pred_bubble;
            f->pred_tokens_per_s = p->pred_tokens_per_s;
            f->pred_mfu = p->pred_mfu;
        }
        if (!best || p->pred_tokens_per_s > best->pred_tokens_per_s) {
            pt_plan_destroy(best);
            best = p;
        } else {
            pt_plan_destroy(p);
        }
    }
    if (!best)
        return pt_fail(PT_EINTERNAL, "auto: a candidate that fit stopped fitting when simulated; please report this");
    if (rq->candidates && rq->max_candidates > 0) {
        /* fitting schedules fastest first, then the others in search order */
        int n = 0;
        for (int pass = 0; pass < 2; pass++) {
            const int base = n;
            for (int si = 0; si < n_scheds && n < rq->max_candidates; si++) {
                if (found[si].fits != (pass == 0))
                    continue;
                int pos = n++;
                rq->candidates[pos] = found[si];
                while (pass == 0 && pos > base &&
                       rq->candidates[pos].pred_tokens_per_s > rq->candidates[pos - 1].pred_tokens_per_s) {
                    pt_plan_candidate t = rq->candidates[pos];
                    rq->candidates[pos] = rq->candidates[pos - 1];
                    rq->candidates[pos - 1] = t;
                    pos--;
                }
            }
        }
        if (rq->n_candidates)
            *rq->n_candidates = n;
    }
    *out = best;
    return PT_OK;
}

pt_status pt_plan_make(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                       const pt_layer_times *measured, const pt_plan_request *rq, pt_plan **out)
{
    *out = NULL;
    static const char *const methods[] = { "uniform", "params", "time", "memory", "auto" };
    const char *method = rq->method ? rq->method : "time";
    int known = 0;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        known |= strcmp(method, methods[i]) == 0;
    if (!known)
        return pt_fail(PT_EINVAL, "unknown partition method '%s'; use uniform, params, time, memory or auto", method);
    const int n_dev = topo->n_nodes * topo->devices_per_node;
    const int G = rq->n_devices > 0 ? rq->n_devices : n_dev;
    if (G > n_dev)
        return pt_fail(PT_EINVAL, "%d devices requested but the topology has %d nodes x %d devices", G, topo->n_nodes,
                       topo->devices_per_node);
    if (rq->zero < 0 || rq->zero > 1)
        return pt_fail(PT_EINVAL, "zero must be 0 (every replica holds all its AdamW moments) or 1 (each holds 1/D), "
                                  "not %d",
                       rq->zero);
    if (rq->sp < 0 || rq->sp > 1)
        return pt_fail(PT_EINVAL, "sp must be 0 or 1 (sequence parallelism with T > 1), not %d", rq->sp);
    if (rq->n_tp < 0)
        return pt_fail(PT_EINVAL, "tensor-parallel size %d: use 0 (auto searches), 1 or more", rq->n_tp);
    if (rq->recompute < -1 || rq->recompute > 1)
        return pt_fail(PT_EINVAL, "recompute must be -1 (as needed), 0 or 1 (got %d)", rq->recompute);
    const int T = rq->seq_len > 0 ? rq->seq_len : cfg->max_seq_len;
    if (T > cfg->max_seq_len)
        return pt_fail(PT_EINVAL, "sequence length %d exceeds %s's context of %d", T, cfg->name, cfg->max_seq_len);
    const double cap = rq->mem_cap_bytes > 0 ? rq->mem_cap_bytes : dev->mem_bytes;
    if (strcmp(method, "auto") == 0)
        return make_auto(cfg, dev, topo, measured, rq, G, T, cap, out);

    const char *sched = rq->schedule ? rq->schedule : "1f1b";
    const int V = rq->n_chunks > 0 ? rq->n_chunks : pt_part_sched_default_chunks(sched);
    PT_CHECK(pt_part_sched_check_chunks(sched, V));
    const int tp = rq->n_tp > 0 ? rq->n_tp : 1;
    PT_CHECK(pt_plan_check_tp(cfg, tp, topo->devices_per_node));
    if (G % tp != 0)
        return pt_fail(PT_EINVAL, "--tp %d does not divide the %d devices; use a T that divides --gpus", tp, G);
    const int Gs = G / tp; /* devices for stages x replicas */
    int P = rq->n_stages, D = rq->n_replicas;
    if (P <= 0 && D <= 0)
        D = 1;
    if (P <= 0)
        P = Gs / D;
    if (D <= 0)
        D = Gs / P;
    if (P < 1 || D < 1 || P * D != Gs)
        return pt_fail(PT_EINVAL, "%d stages x %d tensor x %d replicas != %d devices; devices = stages x tensor x replicas",
                       P, tp, D, G);
    const int B = rq->micro_batch_size > 0 ? rq->micro_batch_size : 1;
    const int M = resolve_M(rq, P, D, B, 0);
    if (M < 1)
        return pt_fail(PT_EINVAL, "global batch %d does not divide into %d replicas x micro-batch size %d",
                       rq->global_batch, D, B);
    return make_fixed(cfg, dev, topo, measured, method, P, V, D, B, M, T, sched, rq->recompute, rq->zero, tp, rq->sp, cap,
                      0, 1, out);
}

pt_status pt_plan_best_head_split(const pt_model_config *cfg, const pt_device *dev, const pt_topology *topo,
                                  const pt_plan_request *rq, int *k, double *t_k, double *t_1)
{
    pt_model_config c = *cfg;
    double best_t = 0, first_t = 0;
    int best = 1;
    for (int K = 1; K <= PT_HEAD_SPLIT_AUTO_MAX; K++) {
        c.head_split = K;
        if (K > 1 && pt_model_config_validate(&c) != PT_OK)
            break; /* fewer vocabulary rows than shards */
        pt_plan *p = NULL;
        pt_status st = pt_plan_make(&c, dev, topo, NULL, rq, &p);
        if (st != PT_OK) {
            if (K == 1)
                return st;
            continue;
        }
        double t = p->pred_step_time_s;
        pt_plan_destroy(p);
        if (K == 1)
            best_t = first_t = t;
        else if (t < best_t * (best == 1 ? 0.97 : 0.99)) {
            best_t = t;
            best = K;
        }
    }
    pt_clear_error();
    *k = best;
    if (t_k)
        *t_k = best_t;
    if (t_1)
        *t_1 = first_t;
    return PT_OK;
}
