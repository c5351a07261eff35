/* `pipetrain bench zero [--json] [--model gpt2-small] [--steps N] ...`: the distributed optimizer
 * (ZeRO-1, `train --zero 1`) and the gradient reduction overlapped with the backward (`train
 * --overlap 1`) against plain data parallelism, side by side in one invocation (issue 17,
 * "Performance").
 *
 * For each pipeline depth P in --stages (default 1,2) with D = --dp replicas (default 2), over the
 * --provider libfabric provider (default shm), and for each configuration of --configs (default
 * zero0,zero0-overlap,zero1-overlap; zero1 is the fourth: --zero 1 without overlap)
 *   zero0          --zero 0, the gradients reduced after the backward
 *   zero0-overlap  --zero 0, the reduction in buckets while the backward computes
 *   zero1-overlap  --zero 1 with the overlap
 * it starts P x D ranks through pt_launch, one thread each, sets each rank up through the training
 * job's phases (runtime.h) as `pipetrain train` does, runs one warm-up step, then --steps timed
 * steps, and each rank writes its numbers to a file of its own:
 *   step_s          its mean pt_runtime_step_info.step_s;
 *   exposed_comm_s  per step, the time it spent blocked in the gradient reduction: the step info's
 *                   exposed_comm_s, the communication waits of its REDUCE_GRADS and OPTIMIZER_STEP
 *                   actions (with overlap, the wait for the buckets still in flight; the tied and
 *                   norm all-reduces; ZeRO-1's parameter all-gather); the pipeline's own sends and
 *                   receives are not in it (they are in comm_wait_s, the step info's every wait);
 *   optim_bytes     its peak of optimizer state as the allocator measured it (pt_backend_mem_stats:
 *                   the peak of PT_MEM_OPTIM, AdamW's m and v), beside what the optimizers' ranges
 *                   say it must be (2 x 4 bytes per element of each chunk's pt_optim_range, through
 *                   pt_runtime_chunk_optim), and its peak of every kind (memkind.h);
 *   bucket_s,       with --overlap, the engine's collectives per step (its buckets' start to end,
 *   hidden_s        from the profile's bucket events) and the part of them done before the rank
 *                   reached REDUCE_GRADS, i.e. while the backward still computed;
 *   fwd_s, bwd_s,   the step info's host time per phase, less communication waits;
 *   optim_s
 *   loss            the last step's loss (every configuration must give the same bits: the ratio
 *                   line says whether they did).
 * Configurations run in this order, --rounds times over (each configuration's numbers are the mean
 * of its rounds, and its fastest round is kept too), so a slow minute of a loaded machine falls on
 * all of them alike.
 *
 * Prints one JSON object per configuration (with "config"), then one per P with the ratios
 * (optimizer state zero1 / zero0: expected 1/D; exposed communication overlap / none: expected
 * <= 0.5; step time zero1 / zero0 with the same overlap setting: expected within 5%), and the same
 * as a table (on stdout, or on stderr with --json so that stdout stays JSON lines). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/backend.h"
#include "pipetrain/memkind.h"
#include "pipetrain/optim.h"
#include "pipetrain/runtime.h"
#include "pipetrain/schedule.h"
#include "pipetrain/timeutil.h"
#include "pipetrain/train_loop.h"

#define BZ_MAX_P 4
#define BZ_MAX_RANKS 16
#define BZ_N_MODES 4

typedef struct bz_opts {
    const char *model, *schedule, *provider, *stages, *configs;
    int B, T, M, D, steps, rounds;
} bz_opts;

/* One configuration's mode: the --zero setting and whether the reduction overlaps the backward. */
typedef struct bz_mode {
    const char *name;
    int zero, overlap;
} bz_mode;

/* modes[Z * 2 + O]: --zero Z, --overlap O */
static const bz_mode modes[BZ_N_MODES] = {
    { "zero0", 0, 0 }, { "zero0-overlap", 0, 1 }, { "zero1", 1, 0 }, { "zero1-overlap", 1, 1 }
};
static const char *const mode_names[BZ_N_MODES + 1] = { "zero0", "zero0-overlap", "zero1", "zero1-overlap", NULL };

/* One rank's numbers, as its worker writes them (the struct's bytes: the worker is this program). */
typedef struct bz_rank {
    double step_s, comm_wait_s, exposed_s, loss;
    double min_step_s;               /* its fastest step (over the rounds too) */
    double fwd_s, bwd_s, optim_s;    /* the step info's host time per phase, less comm waits */
    double bucket_s;                 /* --overlap: the engine's collectives (its buckets' start to end) */
    double hidden_s;                 /* --overlap: the part of them before the rank reached REDUCE_GRADS */
    double optim_bytes;              /* the allocator's peak of PT_MEM_OPTIM */
    double optim_range_bytes;        /* 2 x 4 bytes x the elements of the optimizers' ranges */
    double peak_bytes;               /* the allocator's peak, all kinds */
    double kind_peak[PT_MEM_KINDS];  /* the allocator's peak of each kind */
} bz_rank;

/* One configuration's numbers: sums over its rounds, then means. */
typedef struct bz_result {
    int P, mode, ran, world;
    int loss_varied; /* 1: a rank's last loss differed between rounds (the runs should repeat bit for bit) */
    double best_step_s; /* the fastest round's step time (mean over the ranks) */
    bz_rank rank[BZ_MAX_RANKS];
} bz_result;

static pt_status bz_args(const bz_opts *o, int P, const bz_mode *m, pt_runtime_train_args *a)
{
    memset(a, 0, sizeof(*a));
    pt_train_cfg *tc = &a->train;
    pt_train_cfg_defaults(tc);
    tc->model = o->model;
    tc->data = "builtin";
    tc->seed = 1337;
    tc->steps = o->steps + 1;
    tc->threads = 1;
    tc->micro_batches = o->M;
    tc->micro_batch_size = o->B;
    tc->seq_len = o->T;
    tc->lr = 1e-4;
    tc->lr_min = 1e-4;
    tc->warmup = 0;
    tc->eval_batches = 0;
    tc->run_dir = NULL;
    a->stages = P;
    a->replicas = o->D;
    a->zero = m->zero;
    a->overlap = m->overlap;
    a->schedule = o->schedule;
    a->partition = "time";
    a->provider = o->provider;
    a->profile = 1; /* the overlapped buckets' times (pt_prof_event, action < 0) */
    return PT_OK;
}

/* Per step, over the profiled steps: the overlap engine's bucket events (kind REDUCE_GRADS, action
 * < 0; runtime.c records them at REDUCE_GRADS) — *busy_s their collectives' time, *hidden_s the
 * part of it before the step's REDUCE_GRADS action began (while the backward still computed). */
static void bucket_times(const pt_profile *p, int steps, double *busy_s, double *hidden_s)
{
    const pt_prof_event *ev = pt_profile_events(p);
    size_t n = pt_profile_n_events(p);
    int64_t busy = 0, hidden = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].kind != PT_ACT_REDUCE_GRADS || ev[i].action < 0)
            continue;
        int64_t t_reduce = ev[i].start_ns;
        for (size_t b = 0; b < n; b++) {
            const pt_prof_event *e = &ev[b];
            if (e->step != ev[i].step || e->action >= 0 || e->kind != PT_ACT_REDUCE_GRADS || e->end_ns <= e->start_ns)
                continue;
            busy += e->end_ns - e->start_ns;
            int64_t z = e->end_ns < t_reduce ? e->end_ns : t_reduce;
            if (z > e->start_ns)
                hidden += z - e->start_ns;
        }
    }
    *busy_s = (double)busy * 1e-9 / steps;
    *hidden_s = (double)hidden * 1e-9 / steps;
}

/* The bytes of AdamW state this rank holds: m and v over each chunk's optimizer range. */
static double optim_state_bytes(pt_runtime *rt)
{
    double bytes = 0;
    for (int c = 0; c < pt_runtime_n_chunks(rt); c++) {
        size_t lo = 0, hi = 0;
        pt_optim_range(pt_runtime_chunk_optim(rt, c), &lo, &hi);
        bytes += 2.0 * (double)(hi - lo) * sizeof(float);
    }
    return bytes;
}

/* One rank of one configuration: a warm-up step, then --steps timed ones; writes one line of
 * numbers to <out>.<rank>. */
static pt_status worker(const bz_opts *o, const bz_mode *m, const char *out_path)
{
    int in_job = 0, rank = 0, world = 1;
    PT_CHECK(pt_comm_env_job(&in_job, &rank, &world));
    if (world % o->D != 0)
        return pt_fail(PT_EINVAL, "bench zero --worker: %d ranks are not a multiple of --dp %d", world, o->D);
    pt_runtime_train_args a;
    PT_CHECK(bz_args(o, world / o->D, m, &a));
    pt_train_job j;
    pt_status st = pt_train_job_setup(&j, &a);
    if (st != PT_OK)
        goto out;
    pt_profile_set_enabled(j.prof, 0);
    PT_TRY(pt_runtime_step(j.rt, j.data, 0, 1e-4f, NULL), out);
    pt_profile_set_enabled(j.prof, 1);
    bz_rank r;
    memset(&r, 0, sizeof(r));
    for (int s = 1; s <= o->steps; s++) {
        pt_runtime_step_info si;
        PT_TRY(pt_runtime_step(j.rt, j.data, s, 1e-4f, &si), out);
        r.step_s += si.step_s / o->steps;
        if (s == 1 || si.step_s < r.min_step_s)
            r.min_step_s = si.step_s;
        r.comm_wait_s += si.comm_wait_s / o->steps;
        r.exposed_s += si.exposed_comm_s / o->steps;
        r.fwd_s += si.fwd_s / o->steps;
        r.bwd_s += si.bwd_s / o->steps;
        r.optim_s += si.optim_s / o->steps;
        r.loss = si.loss;
    }
    bucket_times(j.prof, o->steps, &r.bucket_s, &r.hidden_s);
    r.optim_range_bytes = optim_state_bytes(j.rt);
    pt_mem_stats ms;
    pt_backend_mem_stats(&ms);
    r.optim_bytes = (double)ms.kind_peak[PT_MEM_OPTIM];
    r.peak_bytes = (double)ms.peak;
    for (int k = 0; k < PT_MEM_KINDS; k++)
        r.kind_peak[k] = (double)ms.kind_peak[k];
    char path[512];
    snprintf(path, sizeof(path), "%s.%d", out_path, j.rank);
    FILE *f = fopen(path, "wb");
    if (!f) {
        st = pt_fail(PT_EIO, "bench zero: cannot write %s", path);
        goto out;
    }
    size_t wrote = fwrite(&r, sizeof(r), 1, f);
    if (fclose(f) != 0 || wrote != 1)
        st = pt_fail(PT_EIO, "bench zero: cannot write %s", path);
out:
    pt_train_job_close(&j);
    return st;
}

/* Starts the P x D ranks of one configuration and adds their numbers to *res. */
static pt_status run_config(const bz_opts *o, int P, const bz_mode *m, bz_result *res)
{
    char tmp[] = "/tmp/pt-bench-zero-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0)
        return pt_fail(PT_EIO, "bench zero: cannot create a temporary file in /tmp");
    close(fd);
    int world = P * o->D;
    char b_arg[16], t_arg[16], m_arg[16], d_arg[16], s_arg[16];
    snprintf(b_arg, sizeof(b_arg), "%d", o->B);
    snprintf(t_arg, sizeof(t_arg), "%d", o->T);
    snprintf(m_arg, sizeof(m_arg), "%d", o->M);
    snprintf(d_arg, sizeof(d_arg), "%d", o->D);
    snprintf(s_arg, sizeof(s_arg), "%d", o->steps);
    char *args[] = { "/proc/self/exe", "bench", "zero", "--worker", (char *)m->name, "--model", (char *)o->model,
                     "--schedule", (char *)o->schedule, "--provider", (char *)o->provider, "--micro-batches", m_arg,
                     "--micro-batch-size", b_arg, "--seq-len", t_arg, "--dp", d_arg, "--steps", s_arg, "--out", tmp,
                     NULL };
    pt_launch_opts lo = { .nproc = world, .nodes = 1, .node_rank = 0, .master = NULL };
    int code = 0;
    pt_status st = pt_launch(&lo, args, &code);
    double round_step = 0;
    for (int r = 0; r < world; r++) {
        char path[512];
        snprintf(path, sizeof(path), "%s.%d", tmp, r);
        if (st == PT_OK) {
            FILE *f = fopen(path, "rb");
            bz_rank x;
            if (!f || fread(&x, sizeof(x), 1, f) != 1)
                st = pt_fail(PT_EFORMAT, "bench zero: rank %d of %s left no result in %s", r, m->name, path);
            else {
                bz_rank *y = &res->rank[r];
                round_step += x.step_s / world;
                y->step_s += x.step_s;
                if (!res->ran || x.min_step_s < y->min_step_s)
                    y->min_step_s = x.min_step_s;
                y->comm_wait_s += x.comm_wait_s;
                y->exposed_s += x.exposed_s;
                y->fwd_s += x.fwd_s;
                y->bwd_s += x.bwd_s;
                y->optim_s += x.optim_s;
                y->bucket_s += x.bucket_s;
                y->hidden_s += x.hidden_s;
                if (res->ran && x.loss != y->loss)
                    res->loss_varied = 1;
                y->loss = x.loss;
                y->optim_range_bytes = x.optim_range_bytes;
                if (x.optim_bytes > y->optim_bytes)
                    y->optim_bytes = x.optim_bytes;
                if (x.peak_bytes > y->peak_bytes)
                    y->peak_bytes = x.peak_bytes;
                for (int k = 0; k < PT_MEM_KINDS; k++)
                    if (x.kind_peak[k] > y->kind_peak[k])
                        y->kind_peak[k] = x.kind_peak[k];
            }
            if (f)
                fclose(f);
        }
        unlink(path);
    }
    unlink(tmp);
    if (st == PT_OK) {
        if (!res->ran || round_step < res->best_step_s)
            res->best_step_s = round_step;
        res->ran++;
        res->world = world;
    }
    return st;
}

/* Per-configuration figures over its ranks (after the rounds' sums were divided). */
typedef struct bz_sum {
    double step_s, min_step_s, exposed_s, comm_wait_s, fwd_s, bwd_s, optim_s, bucket_s, hidden_s; /* means over the ranks */
    double optim_bytes, optim_range_bytes, peak_bytes;                                /* the largest rank's */
} bz_sum;

static bz_sum summarize(const bz_result *r)
{
    bz_sum s = { 0 };
    for (int i = 0; i < r->world; i++) {
        const bz_rank *x = &r->rank[i];
        s.step_s += x->step_s / r->world;
        s.min_step_s += x->min_step_s / r->world;
        s.exposed_s += x->exposed_s / r->world;
        s.comm_wait_s += x->comm_wait_s / r->world;
        s.fwd_s += x->fwd_s / r->world;
        s.bwd_s += x->bwd_s / r->world;
        s.optim_s += x->optim_s / r->world;
        s.bucket_s += x->bucket_s / r->world;
        s.hidden_s += x->hidden_s / r->world;
        if (x->optim_bytes > s.optim_bytes)
            s.optim_bytes = x->optim_bytes;
        if (x->optim_range_bytes > s.optim_range_bytes)
            s.optim_range_bytes = x->optim_range_bytes;
        if (x->peak_bytes > s.peak_bytes)
            s.peak_bytes = x->peak_bytes;
    }
    return s;
}

static void print_json(const bz_opts *o, const bz_result *r)
{
    const bz_mode *m = &modes[r->mode];
    printf("{\"bench\":\"zero\",\"config\":\"p%dd%d-%s\",\"model\":\"%s\",\"stages\":%d,\"replicas\":%d,\"zero\":%d,"
           "\"overlap\":%s,",
           r->P, o->D, m->name, o->model, r->P, o->D, m->zero, m->overlap ? "true" : "false");
    bz_sum s = summarize(r);
    printf("\"provider\":\"%s\",\"schedule\":\"%s\",\"microbatches\":%d,\"micro_batch_size\":%d,"
           "\"seq_len\":%d,\"steps\":%d,\"rounds\":%d,\"step_s\":%.6f,\"best_round_step_s\":%.6f,\"fastest_step_s\":%.6f,"
           "\"exposed_comm_s\":%.6f,"
           "\"exposed_comm_source\":\"pt_runtime_step_info.exposed_comm_s\",\"overlap_bucket_s\":%.6f,"
           "\"overlap_hidden_s\":%.6f,\"comm_wait_s\":%.6f,\"fwd_s\":%.6f,\"bwd_s\":%.6f,\"optim_s\":%.6f,"
           "\"optim_state_bytes\":%.0f,\"optim_state_source\":\"allocator peak of kind optimizer\","
           "\"optim_range_bytes\":%.0f,\"peak_bytes\":%.0f,\"per_rank\":[",
           o->provider, o->schedule, o->M, o->B, o->T, o->steps, r->ran, s.step_s, r->best_step_s, s.min_step_s,
           s.exposed_s, s.bucket_s, s.hidden_s, s.comm_wait_s, s.fwd_s, s.bwd_s, s.optim_s, s.optim_bytes, s.optim_range_bytes,
           s.peak_bytes);
    for (int i = 0; i < r->world; i++) {
        const bz_rank *x = &r->rank[i];
        printf("%s{\"rank\":%d,\"step_s\":%.6f,\"fastest_step_s\":%.6f,\"exposed_comm_s\":%.6f,\"overlap_bucket_s\":%.6f,"
               "\"overlap_hidden_s\":%.6f,\"comm_wait_s\":%.6f,\"fwd_s\":%.6f,\"bwd_s\":%.6f,\"optim_s\":%.6f,"
               "\"optim_state_bytes\":%.0f,\"optim_range_bytes\":%.0f,\"peak_bytes\":%.0f,\"peak_by_kind\":{",
               i ? "," : "", i, x->step_s, x->min_step_s, x->exposed_s, x->bucket_s, x->hidden_s, x->comm_wait_s, x->fwd_s, x->bwd_s,
               x->optim_s, x->optim_bytes, x->optim_range_bytes, x->peak_bytes);
        for (int k = 0; k < PT_MEM_KINDS; k++)
            printf("%s\"%s\":%.0f", k ? "," : "", pt_mem_kind_name(k), x->kind_peak[k]);
        printf("},\"loss\":%.9g}", x->loss);
    }
    printf("]%s}\n", r->loss_varied ? ",\"loss_varied_between_rounds\":true" : "");
}

static void print_row(FILE *out, const bz_opts *o, const bz_result *r)
{
    char cfg[48];
    snprintf(cfg, sizeof(cfg), "p%dd%d-%s", r->P, o->D, modes[r->mode].name);
    bz_sum s = summarize(r);
    fprintf(out, "%-20s %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %11.2f %9.2f\n", cfg, 1e3 * s.step_s,
            1e3 * r->best_step_s, 1e3 * s.min_step_s, 1e3 * s.exposed_s, 1e3 * s.hidden_s, 1e3 * s.bucket_s, 1e3 * s.comm_wait_s,
            1e3 * s.optim_s, s.optim_bytes / (1 << 20), s.peak_bytes / (1 << 20));
}

/* ratio a / b, or NAN when either did not run (printed as null / "n/a") */
static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

static void fmt_ratio(char *buf, size_t n, double v, int json)
{
    if (isnan(v))
        snprintf(buf, n, "%s", json ? "null" : "n/a");
    else
        snprintf(buf, n, "%.4f", v);
}

/* The first configuration that ran of the two modes a and b (modes[] indices), or NULL. */
static const bz_result *pick(const bz_result *r, int a, int b)
{
    return r[a].ran ? &r[a] : r[b].ran ? &r[b] : NULL;
}

/* The ratios of depth P from its configurations r[0..BZ_N_MODES-1] (modes order), those that ran:
 *   optimizer state zero1 / zero0 (overlap or not: it does not change memory but for its buckets);
 *   exposed comm overlap / none, at --zero 0 (else at --zero 1);
 *   step zero1 / zero0 with the same overlap setting (overlapped, else not), means and best rounds;
 *   whether every configuration's last loss is the first one's, bit for bit, on every rank. */
static void print_ratios(FILE *out, int json, const bz_opts *o, int P, const bz_result *r)
{
    const bz_result *z0 = pick(r, 0, 1), *z1 = pick(r, 2, 3);
    double mem = z0 && z1 ? ratio(summarize(z1).optim_bytes, summarize(z0).optim_bytes) : NAN;
    const bz_result *en = r[0].ran && r[1].ran ? &r[0] : r[2].ran && r[3].ran ? &r[2] : NULL;
    double exp = en ? ratio(summarize(en + 1).exposed_s, summarize(en).exposed_s) : NAN;
    const bz_result *s0 = r[1].ran && r[3].ran ? &r[1] : r[0].ran && r[2].ran ? &r[0] : NULL;
    const bz_result *s1 = s0 ? s0 + 2 : NULL;
    double stp = s0 ? ratio(summarize(s1).step_s, summarize(s0).step_s) : NAN;
    double best = s0 ? ratio(s1->best_step_s, s0->best_step_s) : NAN;
    double fast = s0 ? ratio(summarize(s1).min_step_s, summarize(s0).min_step_s) : NAN;
    const bz_result *first = NULL;
    int same = 1;
    for (int k = 0; k < BZ_N_MODES; k++) {
        if (!r[k].ran)
            continue;
        if (!first)
            first = &r[k];
        for (int i = 0; i < r[k].world && first->world == r[k].world; i++)
            same = same && memcmp(&first->rank[i].loss, &r[k].rank[i].loss, sizeof(double)) == 0;
        same = same && !r[k].loss_varied && first->world == r[k].world;
    }
    char a[32], b[32], c[32], d[32], e[32], en_s[64], pair[64];
    fmt_ratio(e, sizeof(e), fast, 1);
    fmt_ratio(a, sizeof(a), mem, 1);
    fmt_ratio(b, sizeof(b), exp, 1);
    fmt_ratio(c, sizeof(c), stp, 1);
    fmt_ratio(d, sizeof(d), best, 1);
    snprintf(en_s, sizeof(en_s), "%s/%s", en ? modes[en[1].mode].name : "-", en ? modes[en->mode].name : "-");
    snprintf(pair, sizeof(pair), "%s/%s", s1 ? modes[s1->mode].name : "-", s0 ? modes[s0->mode].name : "-");
    if (json)
        printf("{\"bench\":\"zero\",\"config\":\"p%dd%d-ratios\",\"stages\":%d,\"replicas\":%d,"
               "\"optim_state_zero1_over_zero0\":%s,\"optim_state_expected\":%.4f,"
               "\"exposed_comm_overlap_over_none\":%s,\"exposed_comm_pair\":\"%s\",\"exposed_comm_expected_at_most\":0.5,"
               "\"step_zero1_over_zero0\":%s,\"best_round_step_zero1_over_zero0\":%s,\"fastest_step_zero1_over_zero0\":%s,"
               "\"step_pair\":\"%s\","
               "\"step_expected_within\":0.05,\"loss_all_equal\":%s}\n",
               P, o->D, P, o->D, a, 1.0 / o->D, b, en_s, c, d, e, pair, same ? "true" : "false");
    fmt_ratio(e, sizeof(e), fast, 0);
    fmt_ratio(a, sizeof(a), mem, 0);
    fmt_ratio(b, sizeof(b), exp, 0);
    fmt_ratio(c, sizeof(c), stp, 0);
    fmt_ratio(d, sizeof(d), best, 0);
    fprintf(out, "  P=%d: optimizer state zero1/zero0 %s (expect %.4f); exposed comm %s %s (expect <= 0.5);\n"
                 "       step %s %s, best rounds %s, fastest steps %s (expect 0.95..1.05); every configuration's loss the "
                 "same bits: %s\n",
            P, a, 1.0 / o->D, en_s, b, pair, c, d, e, same ? "yes" : "NO");
}

int pt_bench_zero(int argc, char **argv)
{
    bz_opts o = { .model = "gpt2-small", .schedule = "1f1b", .provider = "shm", .stages = "1,2",
                  .configs = "zero0,zero0-overlap,zero1-overlap", .B = 2, .T = 256, .M = 4, .D = 2, .steps = 3,
                  .rounds = 1 };
    int json = 0;
    const char *worker_mode = NULL;
    const char *out_path = NULL;
    pt_opt opts[] = {
        { "json", PT_OPT_FLAG, &json, NULL, "one JSON object per line on stdout (the table goes to stderr)", 0 },
        { "model", PT_OPT_STRING, &o.model, "NAME|FILE", "model preset or JSON config", 0 },
        { "stages", PT_OPT_STRING, &o.stages, "P,P,...", "pipeline depths to measure, comma-separated (1..4)", 0 },
        { "dp", PT_OPT_INT, &o.D, "D", "data-parallel replicas of every configuration (2..4)", 0 },
        { "configs", PT_OPT_STRING, &o.configs, "C,C,...",
          "configurations, in the order run: zero0, zero0-overlap, zero1, zero1-overlap", 0 },
        { "schedule", PT_OPT_STRING, &o.schedule, "NAME", "pipeline schedule", 0 },
        { "provider", PT_OPT_STRING, &o.provider, "NAME", "libfabric provider of the ranks (shm, tcp)", 0 },
        { "micro-batches", PT_OPT_INT, &o.M, "M", "micro-batches per replica and step", 0 },
        { "micro-batch-size", PT_OPT_INT, &o.B, "B", "sequences per micro-batch", 0 },
        { "seq-len", PT_OPT_INT, &o.T, "T", "tokens per sequence", 0 },
        { "steps", PT_OPT_INT, &o.steps, "N", "timed steps after one warm-up step", 0 },
        { "rounds", PT_OPT_INT, &o.rounds, "R", "times over every configuration, in turn (numbers: the mean)", 0 },
        { "worker", PT_OPT_STRING, &worker_mode, "CONFIG", "internal: run as one rank of a configuration", 0 },
        { "out", PT_OPT_STRING, &out_path, "FILE", "internal: each --worker rank writes FILE.<rank>", 0 },
    };
    pt_cmd_spec spec = { "pipetrain bench zero [--json] [options]",
                         "ZeRO-1 and the overlapped gradient reduction against plain data parallelism, side by\n"
                         "side: step time, exposed communication and optimizer state per rank for --zero 0,\n"
                         "--zero 0 with overlap and --zero 1 with overlap, at each pipeline depth with D replicas.",
                         opts, (int)(sizeof(opts) / sizeof(opts[0])),
                         "example: pipetrain bench zero --model gpt2-small --steps 3 --json" };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (o.B < 1 || o.T < 1 || o.M < 1 || o.steps < 1 || o.rounds < 1)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--micro-batch-size, --seq-len, --micro-batches, --steps and --rounds "
                                                "must be >= 1"));
    if (o.D < 2 || o.D > 4)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--dp %d: give 2..4 replicas (ZeRO-1 shards over them)", o.D));
    st = pt_args_enum("schedule", o.schedule, pt_sched_generator_names(), NULL, NULL);
    if (st != PT_OK)
        return pt_cli_finish(st);
    if (worker_mode) {
        int k = 0;
        st = pt_args_enum("worker", worker_mode, mode_names, NULL, &k);
        if (st == PT_OK && !out_path)
            st = pt_fail(PT_EINVAL, "--worker needs --out");
        return pt_cli_finish(st == PT_OK ? worker(&o, &modes[k], out_path) : st);
    }
    int want[BZ_N_MODES] = { 0 }, n_want = 0;
    char clist[128], *csave = NULL;
    snprintf(clist, sizeof(clist), "%s", o.configs);
    for (char *tok = strtok_r(clist, ",", &csave); tok; tok = strtok_r(NULL, ",", &csave)) {
        int k = 0;
        st = pt_args_enum("configs", tok, mode_names, NULL, &k);
        if (st != PT_OK)
            return pt_cli_finish(st);
        n_want += !want[k];
        want[k] = 1;
    }
    if (n_want == 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--configs '%s': give at least one of zero0, zero0-overlap, zero1, "
                                                "zero1-overlap", o.configs));
    int Ps[BZ_MAX_P], nP = 0;
    char list[64], *save = NULL;
    snprintf(list, sizeof(list), "%s", o.stages);
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end = NULL;
        long P = strtol(tok, &end, 10);
        if (*end || P < 1 || P > BZ_MAX_P || nP == BZ_MAX_P)
            return pt_cli_finish(pt_fail(PT_EINVAL, "--stages '%s': give up to %d depths, each 1..%d (e.g. 1,2)",
                                         o.stages, BZ_MAX_P, BZ_MAX_P));
        if (P * o.D > BZ_MAX_RANKS)
            return pt_cli_finish(pt_fail(PT_EINVAL, "--stages %ld with --dp %d: %ld ranks, at most %d", P, o.D,
                                         P * o.D, BZ_MAX_RANKS));
        Ps[nP++] = (int)P;
    }
    if (nP == 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--stages '%s': give at least one depth (e.g. 1,2)", o.stages));
    bz_result *res = calloc((size_t)nP * BZ_N_MODES, sizeof(*res));
    if (!res)
        return pt_cli_finish(pt_fail(PT_ENOMEM, "bench zero: out of memory"));
    for (int i = 0; i < nP; i++)
        for (int k = 0; k < BZ_N_MODES; k++) {
            res[i * BZ_N_MODES + k].P = Ps[i];
            res[i * BZ_N_MODES + k].mode = k;
        }
    int64_t t0 = pt_now_ns();
    for (int round = 0; round < o.rounds && st == PT_OK; round++)
        for (int i = 0; i < nP && st == PT_OK; i++)
            for (int k = 0; k < BZ_N_MODES && st == PT_OK; k++)
                if (want[k])
                    st = run_config(&o, Ps[i], &modes[k], &res[i * BZ_N_MODES + k]);
    if (st != PT_OK) {
        free(res);
        return pt_cli_finish(st);
    }
    for (int i = 0; i < nP * BZ_N_MODES; i++) {
        bz_result *r = &res[i];
        for (int x = 0; r->ran && x < r->world; x++) {
            r->rank[x].step_s /= r->ran;
            r->rank[x].comm_wait_s /= r->ran;
            r->rank[x].exposed_s /= r->ran;
            r->rank[x].fwd_s /= r->ran;
            r->rank[x].bwd_s /= r->ran;
            r->rank[x].optim_s /= r->ran;
            r->rank[x].bucket_s /= r->ran;
            r->rank[x].hidden_s /= r->ran;
        }
    }
    FILE *tab = json ? stderr : stdout;
    fprintf(tab, "bench zero: %s, D = %d, %s, provider %s, M %d x B %d x T %d, %d step(s) after a warm-up, %d round(s), "
                 "%.0f s\n",
            o.model, o.D, o.schedule, o.provider, o.M, o.B, o.T, o.steps, o.rounds, pt_seconds_between(t0, pt_now_ns()));
    fprintf(tab, "%-20s %9s %9s %9s %9s %9s %9s %9s %9s %11s %9s\n", "config", "step ms", "best ms", "min ms", "exposed", "hidden",
            "buckets", "waits", "optim ms", "optim MiB", "peak MiB");
    for (int i = 0; i < nP; i++) {
        for (int k = 0; k < BZ_N_MODES; k++) {
            if (!want[k])
                continue;
            if (json)
                print_json(&o, &res[i * BZ_N_MODES + k]);
            print_row(tab, &o, &res[i * BZ_N_MODES + k]);
        }
        print_ratios(tab, json, &o, Ps[i], &res[i * BZ_N_MODES]);
    }
    fprintf(tab, "per step and rank (ms): exposed = the waits of REDUCE_GRADS + OPTIMIZER_STEP (exposed_comm_s); "
                 "buckets = the overlapped collectives' time, hidden = the part of it before REDUCE_GRADS;\n"
                 "waits = every comm wait (comm_wait_s); optim ms = reduce + optimizer host time less waits; best = the "
                 "fastest round's mean step, min = the fastest step; optim MiB / peak MiB: the allocator's peaks (the largest rank)\n");
    fflush(stdout);
    free(res);
    return 0;
}
