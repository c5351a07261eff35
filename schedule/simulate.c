/* The simulator: replays a schedule with per-(stage, kind) costs and per-link latency and
 * bandwidth, and reports the timeline, step time, bubble and peak activation memory per rank.
 *
 * Each rank runs its list in order. Compute takes its stage's cost. A send is issued at once
 * (the rank does not wait); its data occupies the directed link for bytes/bandwidth after the
 * previous transfer on that link, and arrives latency later. A receive waits for its data.
 * Because sends never wait, a rank's times depend only on its own list and on arrival times,
 * which are final once the send is issued; so ranks can be advanced one after another. */
#include <stdlib.h>
#include <string.h>

#include "pipetrain/schedule.h"
#include "sched_internal.h"

/* ---- replay ---- */

typedef struct sim_link {
    int src, dst, kind;
    double free_at;   /* when the link can start the next transfer */
    double *arrival;  /* [ordinal] */
    int n_sent, cap, n_recvd;
} sim_link;

/* The directed links in use, found through a small per-rank list of the links that rank
 * touches (a rank talks to few others, so a scan of its list is short). */
typedef struct sim_links {
    sim_link *v;
    int n, cap;
    int **mine;   /* [rank] indices into v of links with src or dst == rank */
    int *n_mine;  /* [rank] */
} sim_links;

static int push_mine(sim_links *L, int rank, int idx)
{
    int *p = realloc(L->mine[rank], (size_t)(L->n_mine[rank] + 1) * sizeof *p);
    if (!p)
        return 0;
    p[L->n_mine[rank]++] = idx;
    L->mine[rank] = p;
    return 1;
}

/* Finds or adds link (src -> dst, kind), looked up from `rank`'s side. NULL on ENOMEM. */
static sim_link *get_link(sim_links *L, int rank, int src, int dst, int kind)
{
    for (int k = 0; k < L->n_mine[rank]; k++) {
        sim_link *l = &L->v[L->mine[rank][k]];
        if (l->src == src && l->dst == dst && l->kind == kind)
            return l;
    }
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 16;
        sim_link *p = realloc(L->v, (size_t)cap * sizeof *p);
        if (!p)
            return NULL;
        L->v = p;
        L->cap = cap;
    }
    if (!push_mine(L, src, L->n) || (dst != src && !push_mine(L, dst, L->n)))
        return NULL;
    sim_link *l = &L->v[L->n++];
    memset(l, 0, sizeof *l);
    l->src = src;
    l->dst = dst;
    l->kind = kind;
    return l;
}

void pt_sim_result_free(pt_sim_result *r)
{
    if (!r)
        return;
    free(r->bubble);
    free(r->busy_s);
    free(r->peak_inflight);
    free(r->peak_act_bytes);
    free(r->events);
    memset(r, 0, sizeof *r);
}

static double compute_cost(const pt_sim_costs *c, pt_action_kind k, int v)
{
    switch (k) {
    case PT_ACT_FORWARD: return c->f[v];
    case PT_ACT_BACKWARD: return c->b[v];
    case PT_ACT_BACKWARD_INPUT: return c->i[v];
    case PT_ACT_BACKWARD_WEIGHT: return c->w[v];
    case PT_ACT_REDUCE_GRADS: return c->reduce_s;
    case PT_ACT_OPTIMIZER_STEP: return c->step_s;
    default: return 0.0;
    }
}

pt_status pt_sched_simulate(const pt_schedule *s, const pt_sim_costs *c, pt_sim_result *out)
{
    memset(out, 0, sizeof *out);
    PT_CHECK(pt_sched_validate(s));
    int P = s->n_ranks, V = s->n_chunks, S = P * V;
    pt_sim_costs *unit = NULL;
    if (!c) {
        PT_CHECK(pt_sim_costs_uniform(S, &unit));
        c = unit;
    }
    pt_status st = PT_OK;
    sim_links L = { 0 };
    int *pc = NULL, *first = NULL, *held = NULL;
    double *clock = NULL, *held_bytes = NULL;
    if (c->n_vstages != S) {
        st = pt_fail(PT_EINVAL, "simulate: the costs cover %d stages but schedule %s has %d (P=%d x V=%d)",
                     c->n_vstages, s->name, S, P, V);
        goto done;
    }
    long long n_events = 0;
    for (int r = 0; r < P; r++)
        n_events += s->n_actions[r];
    out->n_ranks = P;
    out->bubble = calloc((size_t)P, sizeof(double));
    out->busy_s = calloc((size_t)P, sizeof(double));
    out->peak_inflight = calloc((size_t)P, sizeof(int));
    out->peak_act_bytes = calloc((size_t)P, sizeof(double));
    out->events = malloc((size_t)(n_events + 1) * sizeof *out->events);
    pc = calloc((size_t)P, sizeof *pc);
    first = calloc((size_t)P, sizeof *first);
    held = calloc((size_t)P, sizeof *held);
    clock = calloc((size_t)P, sizeof *clock);
    held_bytes = calloc((size_t)P, sizeof *held_bytes);
    L.mine = calloc((size_t)P, sizeof *L.mine);
    L.n_mine = calloc((size_t)P, sizeof *L.n_mine);
    if (!L.mine || !L.n_mine || !out->bubble || !out->busy_s || !out->peak_inflight || !out->peak_act_bytes || !out->events || !pc ||
        !first || !held || !clock || !held_bytes) {
        st = pt_fail(PT_ENOMEM, "simulate: out of memory for %lld events", n_events);
        goto done;
    }
    out->n_events = (int)n_events;
    for (int r = 1; r < P; r++)
        first[r] = first[r - 1] + s->n_actions[r - 1];
    int progress = 1;
    while (progress) {
        progress = 0;
        for (int r = 0; r < P; r++) {
            while (pc[r] < s->n_actions[r]) {
                int i = pc[r];
                const pt_action *a = &s->actions[r][i];
                int v = a->chunk >= 0 ? s->stage_of[r * V + a->chunk] : -1;
                double start = clock[r], end = start;
                if (a->kind == PT_ACT_RECV_ACT || a->kind == PT_ACT_RECV_GRAD) {
                    sim_link *l = get_link(&L, r, a->peer, r, a->kind == PT_ACT_RECV_GRAD);
                    if (!l) {
                        st = pt_fail(PT_ENOMEM, "simulate: out of memory");
                        goto done;
                    }
                    if (l->n_recvd >= l->n_sent)
                        break; /* its send is not issued yet: another rank goes first */
                    double t = l->arrival[l->n_recvd++];
                    end = t > start ? t : start;
                } else if (a->kind == PT_ACT_SEND_ACT || a->kind == PT_ACT_SEND_GRAD) {
                    sim_link *l = get_link(&L, r, r, a->peer, a->kind == PT_ACT_SEND_GRAD);
                    if (!l) {
                        st = pt_fail(PT_ENOMEM, "simulate: out of memory");
                        goto done;
                    }
                    if (l->n_sent == l->cap) {
                        int cap = l->cap ? 2 * l->cap : 16;
                        double *p = realloc(l->arrival, (size_t)cap * sizeof *p);
                        if (!p) {
                            st = pt_fail(PT_ENOMEM, "simulate: out of memory");
                            goto done;
                        }
                        l->arrival = p;
                        l->cap = cap;
                    }
                    int boundary = a->kind == PT_ACT_SEND_ACT ? v : v - 1;
                    double bytes = c->boundary_bytes ? c->boundary_bytes[boundary] : 0.0;
                    double xfer = c->link_bandwidth_Bps > 0 ? bytes / c->link_bandwidth_Bps : 0.0;
                    double begin = start > l->free_at ? start : l->free_at;
                    l->free_at = begin + xfer;
                    l->arrival[l->n_sent++] = begin + xfer + c->link_latency_s;
                } else {
                    end = start + compute_cost(c, a->kind, v);
                    if (pt_action_is_compute(a->kind))
                        out->busy_s[r] += end - start;
                    if (a->kind == PT_ACT_FORWARD) {
                        held[r]++;
                        held_bytes[r] += c->act_bytes ? c->act_bytes[v] : 0.0;
                        if (held[r] > out->peak_inflight[r])
                            out->peak_inflight[r] = held[r];
                        if (held_bytes[r] > out->peak_act_bytes[r])
                            out->peak_act_bytes[r] = held_bytes[r];
                    } else if (a->kind == PT_ACT_BACKWARD || a->kind == PT_ACT_BACKWARD_WEIGHT) {
                        held[r]--;
                        held_bytes[r] -= c->act_bytes ? c->act_bytes[v] : 0.0;
                    }
                }
                out->events[first[r] + i] = (pt_timeline_event){ .rank = r, .action = i, .kind = (int)a->kind,
                                                                 .microbatch = a->microbatch, .chunk = a->chunk,
                                                                 .peer = a->peer, .start_s = start, .end_s = end };
                clock[r] = end;
                pc[r]++;
                progress = 1;
            }
        }
    }
    for (int r = 0; r < P; r++)
        if (pc[r] < s->n_actions[r]) {
            st = pt_fail(PT_EINTERNAL, "simulate: rank %d stopped at action %d of a validated schedule; please report",
                         r, pc[r]);
            goto done;
        }
    double step = 0.0;
    for (int r = 0; r < P; r++)
        step = clock[r] > step ? clock[r] : step;
    out->step_time = step;
    double sum = 0.0;
    for (int r = 0; r < P; r++) {
        out->bubble[r] = step > 0 ? 1.0 - out->busy_s[r] / step : 0.0;
        sum += out->bubble[r];
    }
    out->bubble_overall = sum / P;
done:
    for (int k = 0; k < L.n; k++)
        free(L.v[k].arrival);
    free(L.v);
    if (L.mine)
        for (int r = 0; r < P; r++)
            free(L.mine[r]);
    free(L.mine);
    free(L.n_mine);
    free(pc);
    free(first);
    free(held);
    free(clock);
    free(held_bytes);
    pt_sim_costs_destroy(unit);
    if (st != PT_OK)
        pt_sim_result_free(out);
    return st;
}
