/* The profiler: an event log per rank, gathered to rank 0, summarised next to the simulator's
 * prediction, and written as trace.json, timeline.svg and summary.json (include/pipetrain/profile.h,
 * docs/profiling.md). */
#include "pipetrain/profile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/partition.h"
#include "pipetrain/schedule.h"
#include "pipetrain/timeline.h"
#include "pipetrain/timeutil.h"

struct pt_profile {
    int rank;
    int enabled;
    int64_t clock_offset_ns;
    pt_prof_event *ev;
    size_t n, cap;
    size_t peak_bytes;
    size_t kind_peak[PT_MEM_KINDS]; /* pt_profile_note_mem */
};

pt_status pt_profile_create(int rank, int64_t clock_offset_ns, pt_profile **out)
{
    pt_profile *p = calloc(1, sizeof(*p));
    if (!p)
        return pt_fail(PT_ENOMEM, "out of host memory for the profile");
    p->rank = rank;
    p->enabled = 1;
    p->clock_offset_ns = clock_offset_ns;
    *out = p;
    return PT_OK;
}

void pt_profile_destroy(pt_profile *p)
{
    if (!p)
        return;
    free(p->ev);
    free(p);
}

void pt_profile_set_enabled(pt_profile *p, int enabled) { p->enabled = enabled != 0; }
int pt_profile_enabled(const pt_profile *p) { return p->enabled; }
int64_t pt_profile_now_ns(const pt_profile *p) { return pt_now_ns() + p->clock_offset_ns; }
size_t pt_profile_n_events(const pt_profile *p) { return p->n; }
const pt_prof_event *pt_profile_events(const pt_profile *p) { return p->ev; }

void pt_profile_note_peak_bytes(pt_profile *p, size_t bytes)
{
    if (bytes > p->peak_bytes)
        p->peak_bytes = bytes;
}

void pt_profile_note_mem(pt_profile *p, const pt_mem_stats *m)
{
    pt_profile_note_peak_bytes(p, m->peak);
    for (int k = 0; k < PT_MEM_KINDS; k++)
        if (m->kind_peak[k] > p->kind_peak[k])
            p->kind_peak[k] = m->kind_peak[k];
}

pt_status pt_profile_record(pt_profile *p, const pt_prof_event *e)
{
    if (!p->enabled)
        return PT_OK;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 1024;
        pt_prof_event *ev = realloc(p->ev, cap * sizeof(*ev));
        if (!ev)
            return pt_fail(PT_ENOMEM, "out of host memory for %zu profile events", cap);
        p->ev = ev;
        p->cap = cap;
    }
    p->ev[p->n] = *e;
    p->ev[p->n].rank = p->rank;
    p->n++;
    return PT_OK;
}

pt_status pt_profile_gather(pt_profile *p, pt_comm *comm, int64_t deadline_ns, pt_prof_event **all, size_t *n_all,
                            double *peak_bytes)
{
    return pt_profile_gather_mem(p, comm, deadline_ns, all, n_all, peak_bytes, NULL);
}

/* Each rank sends a header of 1 + PT_MEM_KINDS u64 (peak bytes, then each kind's peak) and its
 * events. */
#define PROF_HDR ((1 + PT_MEM_KINDS) * sizeof(uint64_t))

pt_status pt_profile_gather_mem(pt_profile *p, pt_comm *comm, int64_t deadline_ns, pt_prof_event **all,
                                size_t *n_all, double *peak_bytes, double *kind_peak_bytes)
{
    *all = NULL;
    *n_all = 0;
    size_t bytes = PROF_HDR + p->n * sizeof(pt_prof_event);
    unsigned char *blob = malloc(bytes);
    if (!blob)
        return pt_fail(PT_ENOMEM, "out of host memory for gathering the profile");
    uint64_t hdr[1 + PT_MEM_KINDS];
    hdr[0] = p->peak_bytes;
    for (int k = 0; k < PT_MEM_KINDS; k++)
        hdr[1 + k] = p->kind_peak[k];
    memcpy(blob, hdr, PROF_HDR);
    if (p->n)
        memcpy(blob + PROF_HDR, p->ev, p->n * sizeof(pt_prof_event));
    void *recv = NULL;
    size_t *sizes = NULL;
    int world = 1, rank = 0;
    pt_status st = PT_OK;
    if (comm && pt_comm_size(comm) > 1) {
        world = pt_comm_size(comm);
        rank = pt_comm_rank(comm);
        st = pt_comm_gatherv(comm, 0, blob, bytes, &recv, &sizes, deadline_ns);
        free(blob);
        blob = NULL;
        if (st != PT_OK)
            return pt_fail_wrap(st, "rank %d: gathering the profile to rank 0 failed", rank);
    } else {
        recv = blob;
        sizes = malloc(sizeof(size_t));
        if (!sizes) {
            free(blob);
            return pt_fail(PT_ENOMEM, "out of host memory");
        }
        sizes[0] = bytes;
    }
    if (rank != 0)
        return PT_OK;
    size_t total = 0;
    for (int r = 0; r < world; r++)
        total += sizes[r] >= PROF_HDR ? (sizes[r] - PROF_HDR) / sizeof(pt_prof_event) : 0;
    pt_prof_event *ev = malloc((total ? total : 1) * sizeof(*ev));
    if (!ev) {
        free(recv);
        free(sizes);
        return pt_fail(PT_ENOMEM, "out of host memory for %zu profile events", total);
    }
    size_t off = 0, k = 0;
    for (int r = 0; r < world; r++) {
        const unsigned char *b = (const unsigned char *)recv + off;
        if (sizes[r] < PROF_HDR || (sizes[r] - PROF_HDR) % sizeof(pt_prof_event)) {
            st = pt_fail(PT_EFORMAT, "rank %d sent a profile of %zu bytes, not a whole number of events; ranks run "
                                     "different pipetrain builds",
                         r, sizes[r]);
            break;
        }
        uint64_t h[1 + PT_MEM_KINDS];
        memcpy(h, b, PROF_HDR);
        if (peak_bytes)
            peak_bytes[r] = (double)h[0];
        for (int q = 0; kind_peak_bytes && q < PT_MEM_KINDS; q++)
            kind_peak_bytes[(size_t)r * PT_MEM_KINDS + q] = (double)h[1 + q];
        size_t ne = (sizes[r] - PROF_HDR) / sizeof(pt_prof_event);
        if (ne)
            memcpy(ev + k, b + PROF_HDR, ne * sizeof(pt_prof_event));
        k += ne;
        off += sizes[r];
    }
    free(recv);
    free(sizes);
    if (st != PT_OK) {
        free(ev);
        return st;
    }
    *all = ev;
    *n_all = total;
    return PT_OK;
}

/* ---- summary ---- */

void pt_profile_summary_free(pt_profile_summary *s)
{
    if (!s)
        return;
    free(s->bubble);
    free(s->comm_wait_s);
    free(s->tp_comm_s);
    free(s->exposed_comm_s);
    free(s->peak_bytes);
    free(s->kind_peak_bytes);
    free(s->pred_kind_bytes);
    free(s->pred_bytes);
    free(s->cost_f);
    free(s->cost_b);
    free(s->cost_i);
    free(s->cost_w);
    free(s->pred_bubble);
    memset(s, 0, sizeof(*s));
}

static int is_compute(int kind) { return pt_action_is_compute((pt_action_kind)kind); }

/* The simulator on the measured per-stage costs. */
static pt_status predict(const pt_profile_report_opts *o, pt_profile_summary *s)
{
    const pt_schedule *sc = o->sched;
    int NV = s->n_vstages;
    pt_sim_costs c = { 0 };
    double *arr = calloc((size_t)NV * 6, sizeof(double));
    if (!arr)
        return pt_fail(PT_ENOMEM, "out of host memory");
    c.n_vstages = NV;
    c.f = arr;
    c.b = arr + NV;
    c.i = arr + 2 * NV;
    c.w = arr + 3 * NV;
    c.act_bytes = arr + 4 * NV;
    c.boundary_bytes = arr + 5 * NV;
    double bnd = (double)o->plan->micro_batch_size * o->plan->seq_len * o->cfg->n_embd * sizeof(float);
    for (int v = 0; v < NV; v++) {
        c.f[v] = s->cost_f[v];
        c.b[v] = s->cost_b[v] > 0 ? s->cost_b[v] : s->cost_i[v] + s->cost_w[v];
        c.i[v] = s->cost_i[v] > 0 ? s->cost_i[v] : c.b[v] / 2;
        c.w[v] = s->cost_w[v] > 0 ? s->cost_w[v] : c.b[v] / 2;
        c.act_bytes[v] = 1;
        c.boundary_bytes[v] = v < NV - 1 ? bnd : 0;
    }
    c.link_latency_s = o->link_latency_s > 0 ? o->link_latency_s : 20e-6;
    c.link_bandwidth_Bps = o->link_bandwidth_Bps > 0 ? o->link_bandwidth_Bps : 10e9;
    pt_sim_result r = { 0 };
    pt_status st = pt_sched_simulate(sc, &c, &r);
    free(arr);
    if (st != PT_OK)
        return pt_fail_wrap(st, "predicting the profiled schedule");
    s->pred_bubble = calloc((size_t)r.n_ranks, sizeof(double));
    if (!s->pred_bubble) {
        pt_sim_result_free(&r);
        return pt_fail(PT_ENOMEM, "out of host memory");
    }
    for (int p = 0; p < r.n_ranks; p++)
        s->pred_bubble[p] = r.bubble[p];
    s->pred_bubble_overall = r.bubble_overall;
    s->pred_step_time_s = r.step_time;
    s->has_prediction = 1;
    pt_sim_result_free(&r);
    return PT_OK;
}

pt_status pt_profile_summarize(const pt_prof_event *ev, size_t n, const pt_profile_report_opts *o,
                               pt_profile_summary *out)
{
    memset(out, 0, sizeof(*out));
    if (!o || !o->plan || o->n_world < 1)
        return pt_fail(PT_EINVAL, "pt_profile_summarize: the plan and the world size are required");
    if (n == 0)
        return pt_fail(PT_EINVAL, "the profile holds no events; profile at least one step");
    int W = o->n_world, NV = o->plan->n_vstages;
    int64_t s_lo = ev[0].step, s_hi = ev[0].step;
    for (size_t k = 0; k < n; k++) {
        if (ev[k].rank < 0 || ev[k].rank >= W)
            return pt_fail(PT_EINVAL, "profile event %zu has rank %d outside the world of %d", k, ev[k].rank, W);
        if (ev[k].step < s_lo)
            s_lo = ev[k].step;
        if (ev[k].step > s_hi)
            s_hi = ev[k].step;
    }
    int64_t n_span = s_hi - s_lo + 1;
    if (n_span > 1000000)
        return pt_fail(PT_EINVAL, "profile spans %lld steps; profile fewer", (long long)n_span);
    int64_t *st0 = malloc((size_t)n_span * sizeof(int64_t)), *st1 = malloc((size_t)n_span * sizeof(int64_t));
    int64_t *wend = malloc((size_t)n_span * sizeof(int64_t));
    double *busy = calloc((size_t)W, sizeof(double)), *wait = calloc((size_t)W, sizeof(double));
    double *sum[4], cnt[4 * 256];
    pt_status st = PT_OK;
    out->bubble = calloc((size_t)W, sizeof(double));
    out->comm_wait_s = calloc((size_t)W, sizeof(double));
    out->tp_comm_s = calloc((size_t)W, sizeof(double));
    out->exposed_comm_s = calloc((size_t)W, sizeof(double));
    out->peak_bytes = calloc((size_t)W, sizeof(double));
    out->kind_peak_bytes = calloc((size_t)W * PT_MEM_KINDS, sizeof(double));
    out->pred_kind_bytes = calloc((size_t)W * PT_MEM_KINDS, sizeof(double));
    out->pred_bytes = calloc((size_t)W, sizeof(double));
    out->cost_f = calloc((size_t)NV, sizeof(double));
    out->cost_b = calloc((size_t)NV, sizeof(double));
    out->cost_i = calloc((size_t)NV, sizeof(double));
    out->cost_w = calloc((size_t)NV, sizeof(double));
    if (!st0 || !st1 || !wend || !busy || !wait || !out->bubble || !out->comm_wait_s || !out->tp_comm_s ||
        !out->exposed_comm_s ||
        !out->peak_bytes ||
        !out->kind_peak_bytes || !out->pred_kind_bytes || !out->pred_bytes || !out->cost_f || !out->cost_b || !out->cost_i || !out->cost_w) {
        st = pt_fail(PT_ENOMEM, "out of host memory for the profile summary");
        goto done;
    }
    if (NV > 256) {
        st = pt_fail(PT_EINVAL, "profile summary supports up to 256 virtual stages, not %d", NV);
        goto done;
    }
    sum[0] = out->cost_f;
    sum[1] = out->cost_b;
    sum[2] = out->cost_i;
    sum[3] = out->cost_w;
    memset(cnt, 0, sizeof(cnt));
    for (int64_t i = 0; i < n_span; i++) {
        st0[i] = INT64_MAX;
        st1[i] = INT64_MIN;
        wend[i] = INT64_MIN;
    }
    for (size_t k = 0; k < n; k++) {
        const pt_prof_event *e = &ev[k];
        int64_t i = e->step - s_lo;
        if (e->action == PT_PROF_TP_ACTION) { /* inside an action whose event counts its wait */
            out->tp_comm_s[e->rank] += (double)(e->end_ns - e->start_ns) * 1e-9; /* divided by the steps below */
            continue;
        }
        if (e->start_ns < st0[i])
            st0[i] = e->start_ns;
        if (e->end_ns > st1[i])
            st1[i] = e->end_ns;
        wait[e->rank] += (double)e->wait_ns * 1e-9;
        if (e->kind == PT_ACT_REDUCE_GRADS || e->kind == PT_ACT_OPTIMIZER_STEP)
            out->exposed_comm_s[e->rank] += (double)e->wait_ns * 1e-9; /* divided by the steps below */
        if (is_compute(e->kind)) {
            double d = (double)(e->end_ns - e->start_ns) * 1e-9;
            if (e->end_ns > wend[i])
                wend[i] = e->end_ns;
            busy[e->rank] += d;
            if (e->vstage >= 0 && e->vstage < NV) {
                int kk = e->kind == PT_ACT_FORWARD ? 0 : e->kind == PT_ACT_BACKWARD ? 1
                                                      : e->kind == PT_ACT_BACKWARD_INPUT ? 2
                                                                                          : 3;
                sum[kk][e->vstage] += d;
                cnt[kk * 256 + e->vstage] += 1;
            }
        }
    }
    double tot_step = 0, tot_win = 0;
    int n_steps = 0;
    for (int64_t i = 0; i < n_span; i++) {
        if (st0[i] == INT64_MAX)
            continue;
        n_steps++;
        tot_step += (double)(st1[i] - st0[i]) * 1e-9;
        if (wend[i] > st0[i])
            tot_win += (double)(wend[i] - st0[i]) * 1e-9;
    }
    if (n_steps == 0 || tot_step <= 0) {
        st = pt_fail(PT_EINVAL, "the profile holds no complete step");
        goto done;
    }
    out->n_world = W;
    out->n_steps = n_steps;
    out->step_time_s = tot_step / n_steps;
    out->window_s = tot_win / n_steps;
    for (int r = 0; r < W; r++) {
        out->bubble[r] = tot_win > 0 ? 1.0 - busy[r] / tot_win : 0;
        out->bubble_overall += out->bubble[r] / W;
        out->comm_wait_s[r] = wait[r] / n_steps;
        out->tp_comm_s[r] /= n_steps;
        out->exposed_comm_s[r] /= n_steps;
        out->peak_bytes[r] = o->peak_bytes ? o->peak_bytes[r] : 0;
        /* world rank (d * P + s) * T + t is pipeline rank s */
        const int sr = r / (o->plan->n_tp > 1 ? o->plan->n_tp : 1) % o->plan->n_stages;
        for (int q = 0; q < PT_MEM_KINDS; q++) {
            const size_t at = (size_t)r * PT_MEM_KINDS + q;
            out->kind_peak_bytes[at] = o->kind_peak_bytes ? o->kind_peak_bytes[at] : 0;
            out->pred_kind_bytes[at] =
                o->plan->pred_rank_mem_kind ? o->plan->pred_rank_mem_kind[(size_t)sr * PT_MEM_KINDS + q] : 0;
        }
        out->pred_bytes[r] = o->plan->pred_rank_mem_bytes ? o->plan->pred_rank_mem_bytes[sr] : 0;
    }
    out->has_kinds = o->kind_peak_bytes != NULL;
    for (int kk = 0; kk < 4; kk++)
        for (int v = 0; v < NV; v++)
            if (cnt[kk * 256 + v] > 0)
                sum[kk][v] /= cnt[kk * 256 + v];
    out->n_vstages = NV;
    const pt_plan *pl = o->plan;
    double tokens = (double)pl->micro_batch_size * pl->seq_len * pl->n_microbatches * pl->n_replicas;
    out->tokens_per_s = tokens / out->step_time_s;
    if (o->cfg) {
        out->flops_per_s = pt_cost_step_flops(o->cfg, pl->seq_len, tokens) / out->step_time_s;
        out->mfu = o->peak_flops > 0 ? out->flops_per_s / o->peak_flops : 0;
    }
    if (o->sched && o->cfg)
        st = predict(o, out);
done:
    free(st0);
    free(st1);
    free(wend);
    free(busy);
    free(wait);
    if (st != PT_OK)
        pt_profile_summary_free(out);
    return st;
}

static cJSON *num_array(const double *x, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(x[i]));
    return a;
}

/* "memory": each rank's measured peak by kind beside the plan's prediction for its pipeline rank,
 * (0 where the plan predicted none). */
static void add_memory(cJSON *j, const pt_profile_summary *s, const pt_plan *pl)
{
    cJSON *m = cJSON_AddObjectToObject(j, "memory");
    cJSON *ranks = m ? cJSON_AddArrayToObject(m, "ranks") : NULL;
    if (!ranks)
        return;
    cJSON_AddNumberToObject(m, "zero", pl->zero);
    for (int r = 0; r < s->n_world; r++) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return;
        cJSON_AddNumberToObject(o, "rank", r);
        const int T = pl->n_tp > 1 ? pl->n_tp : 1; /* world rank (d * P + p) * T + t */
        cJSON_AddNumberToObject(o, "stage", r / T % pl->n_stages);
        cJSON_AddNumberToObject(o, "replica", r / T / pl->n_stages);
        if (T > 1)
            cJSON_AddNumberToObject(o, "tp_rank", r % T);
        cJSON_AddNumberToObject(o, "peak_bytes", s->peak_bytes[r]);
        cJSON_AddNumberToObject(o, "pred_bytes", s->pred_bytes[r]);
        cJSON *me = cJSON_AddObjectToObject(o, "measured"), *pr = cJSON_AddObjectToObject(o, "predicted");
        for (int q = 0; me && pr && q < PT_MEM_KINDS; q++) {
            cJSON_AddNumberToObject(me, pt_mem_kind_name(q), s->kind_peak_bytes[(size_t)r * PT_MEM_KINDS + q]);
            cJSON_AddNumberToObject(pr, pt_mem_kind_name(q), s->pred_kind_bytes[(size_t)r * PT_MEM_KINDS + q]);
        }
        cJSON_AddItemToArray(ranks, o);
    }
}

static cJSON *summary_obj(const pt_profile_summary *s, const pt_profile_report_opts *o)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    const pt_plan *pl = o->plan;
    if (o->cfg)
        cJSON_AddStringToObject(j, "model", o->cfg->name);
    if (o->sched)
        cJSON_AddStringToObject(j, "schedule", o->sched->name);
    cJSON_AddNumberToObject(j, "stages", pl->n_stages);
    cJSON_AddNumberToObject(j, "chunks", pl->n_chunks);
    cJSON_AddNumberToObject(j, "replicas", pl->n_replicas);
    cJSON_AddNumberToObject(j, "microbatches", pl->n_microbatches);
    cJSON_AddNumberToObject(j, "micro_batch_size", pl->micro_batch_size);
    cJSON_AddNumberToObject(j, "seq_len", pl->seq_len);
    cJSON_AddNumberToObject(j, "steps", s->n_steps);
    if (o->compute_clock)
        cJSON_AddStringToObject(j, "compute_clock", o->compute_clock);
    cJSON_AddNumberToObject(j, "step_time_s", s->step_time_s);
    cJSON_AddNumberToObject(j, "pipeline_window_s", s->window_s);
    cJSON_AddNumberToObject(j, "tokens_per_s", s->tokens_per_s);
    cJSON_AddNumberToObject(j, "flops_per_s", s->flops_per_s);
    cJSON_AddNumberToObject(j, "mfu", s->mfu);
    cJSON_AddNumberToObject(j, "bubble_overall", s->bubble_overall);
    cJSON_AddItemToObject(j, "bubble", num_array(s->bubble, s->n_world));
    cJSON_AddItemToObject(j, "comm_wait_s", num_array(s->comm_wait_s, s->n_world));
    cJSON_AddItemToObject(j, "tp_comm_s", num_array(s->tp_comm_s, s->n_world));
    cJSON_AddItemToObject(j, "exposed_comm_s", num_array(s->exposed_comm_s, s->n_world));
    cJSON_AddItemToObject(j, "peak_bytes", num_array(s->peak_bytes, s->n_world));
    if (s->has_kinds)
        add_memory(j, s, pl);
    cJSON *c = cJSON_AddObjectToObject(j, "measured_costs_s");
    if (c) {
        cJSON_AddItemToObject(c, "f", num_array(s->cost_f, s->n_vstages));
        cJSON_AddItemToObject(c, "b", num_array(s->cost_b, s->n_vstages));
        cJSON_AddItemToObject(c, "i", num_array(s->cost_i, s->n_vstages));
        cJSON_AddItemToObject(c, "w", num_array(s->cost_w, s->n_vstages));
    }
    if (s->has_prediction) {
        cJSON *p = cJSON_AddObjectToObject(j, "predicted");
        if (p) {
            cJSON_AddNumberToObject(p, "pipeline_window_s", s->pred_step_time_s);
            cJSON_AddNumberToObject(p, "bubble_overall", s->pred_bubble_overall);
            cJSON_AddItemToObject(p, "bubble", num_array(s->pred_bubble, pl->n_stages));
        }
    }
    return j;
}

pt_status pt_profile_summary_json(const pt_profile_summary *s, const pt_profile_report_opts *o, char **text_out)
{
    cJSON *j = summary_obj(s, o);
    char *t = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!t)
        return pt_fail(PT_ENOMEM, "out of host memory for the profile summary");
    *text_out = t;
    return PT_OK;
}

/* Events of steps >= from_step as timeline events, times from the first one's start. */
static pt_status to_timeline(const pt_prof_event *ev, size_t n, int64_t from_step, pt_timeline_event **out,
                             int *n_out)
{
    int64_t t0 = INT64_MAX;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ev[i].step >= from_step) {
            k++;
            if (ev[i].start_ns < t0)
                t0 = ev[i].start_ns;
        }
    pt_timeline_event *te = calloc(k ? k : 1, sizeof(*te));
    if (!te)
        return pt_fail(PT_ENOMEM, "out of host memory for the timeline");
    k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].step < from_step)
            continue;
        te[k++] = (pt_timeline_event){ .rank = ev[i].rank, .action = ev[i].action, .kind = ev[i].kind,
                                       .microbatch = ev[i].microbatch, .chunk = ev[i].chunk, .peer = ev[i].peer,
                                       /* the overlapped reduction's buckets; the tensor-parallel collectives */
                                       .track = ev[i].action == PT_PROF_TP_ACTION ? 2 : ev[i].action < 0,
                                       .start_s = (double)(ev[i].start_ns - t0) * 1e-9,
                                       .end_s = (double)(ev[i].end_ns - t0) * 1e-9 };
    }
    *out = te;
    *n_out = (int)k;
    return PT_OK;
}

typedef pt_status (*writer_fn)(const pt_timeline_event *, int, const pt_timeline_opts *, FILE *);

static pt_status write_one(const char *dir, const char *name, writer_fn fn, const pt_timeline_event *te, int n,
                           const pt_timeline_opts *to)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return pt_fail(PT_EIO, "cannot write %s: %s", path, strerror(errno));
    pt_status st = fn(te, n, to, f);
    if (fclose(f) != 0 && st == PT_OK)
        st = pt_fail(PT_EIO, "cannot write %s: %s", path, strerror(errno));
    if (st != PT_OK)
        return pt_fail_wrap(st, "%s", path);
    return PT_OK;
}

pt_status pt_profile_write_dir(const char *dir, const pt_prof_event *ev, size_t n, const pt_profile_report_opts *o,
                               const pt_profile_summary *s)
{
    if (n == 0)
        return pt_fail(PT_EINVAL, "the profile holds no events; profile at least one step");
    PT_CHECK(pt_mkdirs(dir));
    int64_t first = ev[0].step, last = ev[0].step;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].step > last)
            last = ev[i].step;
        if (ev[i].step < first)
            first = ev[i].step;
    }
    pt_timeline_opts to = { .title = o->title, .n_ranks = o->n_world, .bubble = s ? s->bubble : NULL,
                            .show_comm = 1, .width_px = 0 };
    pt_timeline_event *te = NULL;
    int nt = 0;
    PT_CHECK(to_timeline(ev, n, first, &te, &nt));
    pt_status st = write_one(dir, "trace.json", pt_timeline_trace, te, nt, &to);
    free(te);
    PT_CHECK(st);
    /* The picture: the last profiled step only. */
    PT_CHECK(to_timeline(ev, n, last, &te, &nt));
    st = write_one(dir, "timeline.svg", pt_timeline_svg, te, nt, &to);
    free(te);
    PT_CHECK(st);
    if (s) {
        cJSON *j = summary_obj(s, o);
        if (!j)
            return pt_fail(PT_ENOMEM, "out of host memory for the profile summary");
        char path[4200];
        snprintf(path, sizeof(path), "%s/summary.json", dir);
        st = pt_json_write_file(path, j, 0);
        cJSON_Delete(j);
        PT_CHECK(st);
    }
    return PT_OK;
}
