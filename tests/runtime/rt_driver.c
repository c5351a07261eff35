/* Test driver for the pipeline runtime. Started with --nproc N it re-launches itself as N ranks
 * through pt_launch (the launcher `pipetrain train --nproc` uses); each rank then runs one mode:
 *
 *   equiv   for every model x schedule x partition x M given, train `--steps` steps through the
 *           runtime and compare every tensor of every local chunk, after every step, with a
 *           single-process reference computed in this program on the same global batch (bitwise
 *           with --tol 0); the tied wte copies are both compared, so they are identical too.
 *           Also checks activation slots against the schedule (gpipe: M; 1f1b: at most P - s).
 *           --recompute: every chunk recomputes its blocks in backward; --schedule-file: run a
 *           schedule read from a file instead of the generators.
 *   fault   rank --victim dies (SIGALRM) 1 ms into step 1; the others must fail
 *           with the runtime's error naming the dead rank (ctest matches the text).
 *   mem     --mem-limit is refused on --refuse-stages stages and trains on P stages.
 *   bubble  2-stage 1F1B with profiling: measured bubble vs the simulator on measured costs.
 *
 * It prints; it is a test program, not library code. Exit status 0 = pass.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "pipetrain/json.h"
#include "pipetrain/runtime.h"
#include "pipetrain/train_loop.h"
#include "ref_trainer.h"
#include "pipetrain/timeutil.h"

typedef struct args {
    const char *mode;
    int nproc, P, D, steps, threads, B, T;
    double tol;
    const char *models, *schedules, *partitions, *mbs;
    int victim;
    size_t mem_limit;
    int refuse_stages;
    int64_t timeout_ms;
    double bubble_tol;
    int quiet;
    int check_trainer;
    int recompute;
    const char *sched_file;
    int file_m, file_v;
    int zero;    /* plan->zero of the runs */
    int zero_vs; /* run each configuration with --zero 0 and 1: the same losses and weights, bit for bit */
    int overlap;    /* pt_runtime_opts.overlap of the runs */
    int overlap_vs; /* run each configuration with --overlap 0 and 1 (at --zero): the same bits (zero_check) */
} args;

/* Weights and data from one seed, as the single-process trainer does (train.h). */
#define SEED 1337
#define EVAL_BATCHES 2 /* held-out batches the equivalence runs evaluate */

static int g_rank = 0, g_world = 1;
static pt_comm *g_comm = NULL;

#define LOG0(...)                      \
    do {                               \
        if (g_rank == 0) {             \
            printf(__VA_ARGS__);       \
            fflush(stdout);            \
        }                              \
    } while (0)

static void die_status(const char *what, pt_status st)
{
    fprintf(stderr, "rank %d: %s: %s (%s)\n", g_rank, what, pt_last_error(), pt_status_name(st));
    fflush(stderr);
    exit(1);
}

#define CHECK(expr)                           \
    do {                                      \
        pt_status st_ = (expr);               \
        if (st_ != PT_OK)                     \
            die_status(#expr, st_);           \
    } while (0)

/* ---- settings shared by the reference and the pipeline ---- */

static float g_eps = 1e-8f;

/* --eps: with data parallelism the summation order of gradients changes, and AdamW divides each
 * gradient by its own magnitude (+ eps): a gradient that is mathematically zero (the attention key
 * bias: softmax ignores it) is pure rounding noise, which a tiny eps turns into a full lr-sized
 * step of random sign, and small gradients get their ~1e-7 relative noise amplified. The D=2
 * comparison (1e-6) therefore runs with eps = 1e-2, above the gradients of these tiny models,
 * where the update stays close to linear in the gradient and so measures the reduction itself
 * (max relative L2 difference seen: 3.5e-7; with eps 1e-4 it was 3e-6). */
static pt_adamw_cfg adamw_cfg(void)
{
    return (pt_adamw_cfg){ .lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = g_eps, .weight_decay = 0.1f,
                           .grad_clip = 1.0f };
}

static float lr_at(int64_t step, int steps) { return (float)pt_lr_at(step, 1, steps, 3e-3, 3e-4); }

/* ---- the single-process reference (train.h's step, written out with the model API) ---- */

typedef struct reference {
    int M;
    int n_steps;
    size_t n_params;
    float **snap;  /* [step] host copy of all parameters after that step */
    double *loss;  /* [step] */
    pt_eval_stats eval; /* held-out eval of the final weights: EVAL_BATCHES batches of B */
    pt_model *m;   /* kept for tensor lookup by name */
    pt_optim *o;
} reference;

static void reference_free(reference *r)
{
    if (!r)
        return;
    for (int s = 0; s < r->n_steps; s++)
        free(r->snap[s]);
    free(r->snap);
    free(r->loss);
    pt_optim_destroy(r->o);
    pt_model_destroy(r->m);
    memset(r, 0, sizeof(*r));
}

static void reference_run(const pt_model_config *cfg, const args *a, int M, int D, pt_dataset *data,
                          const pt_backend *be, pt_stream *stream, reference *r)
{
    memset(r, 0, sizeof(*r));
    r->M = M;
    r->n_steps = a->steps;
    int B = a->B, T = a->T, L = pt_model_n_layers(cfg);
    pt_model_opts mo = { .micro_batch = B, .seq_len = T, .n_slots = 1, .recompute = 0 };
    CHECK(pt_model_create(cfg, 0, L - 1, &mo, be, stream, &r->m));
    CHECK(pt_model_init_weights(r->m, SEED));
    pt_adamw_cfg ac = adamw_cfg();
    CHECK(pt_optim_create(r->m, &ac, &r->o));
    r->n_params = pt_model_n_params(r->m);
    r->snap = calloc((size_t)a->steps, sizeof(float *));
    r->loss = calloc((size_t)a->steps, sizeof(double));
    int nt = pt_model_n_tensors(r->m);
    double *ss = calloc((size_t)nt, sizeof(double));
    int32_t *tok = malloc((size_t)B * T * 4), *tgt = malloc((size_t)B * T * 4);
    for (int step = 0; step < a->steps; step++) {
        CHECK(pt_model_zero_grads(r->m));
        int64_t n_tgt = 0;
        for (int j = 0; j < D * M; j++) {
            CHECK(pt_dataset_batch(data, PT_SPLIT_TRAIN, step, (int64_t)j * B, B, T, tok, tgt));
            for (int q = 0; q < B * T; q++)
                n_tgt += tgt[q] >= 0;
        }
        float scale = pt_loss_scale_for(n_tgt);
        double loss = 0;
        int64_t ntok = 0;
        for (int j = 0; j < D * M; j++) {
            CHECK(pt_dataset_batch(data, PT_SPLIT_TRAIN, step, (int64_t)j * B, B, T, tok, tgt));
            CHECK(be->memcpy_h2d(stream, pt_model_slot_tokens(r->m, 0), tok, (size_t)B * T * 4));
            CHECK(be->memcpy_h2d(stream, pt_model_slot_targets(r->m, 0), tgt, (size_t)B * T * 4));
            CHECK(pt_model_forward(r->m, 0));
            double ls;
            int64_t n;
            CHECK(pt_model_slot_loss(r->m, 0, &ls, &n));
            loss += ls;
            ntok += n;
            CHECK(pt_model_backward(r->m, 0, scale));
        }
        CHECK(pt_model_reduce_tied_grads(r->m));
        CHECK(pt_grad_sumsq(r->m, ss));
        double total = 0;
        for (int i = 0; i < nt; i++)
            total += ss[i];
        float clip = pt_clip_scale(sqrt(total), ac.grad_clip);
        CHECK(pt_optim_step(r->o, lr_at(step, a->steps), clip));
        r->loss[step] = ntok ? loss / (double)ntok : 0;
        r->snap[step] = malloc(r->n_params * sizeof(float));
        CHECK(be->memcpy_d2h(stream, r->snap[step], pt_model_params(r->m), r->n_params * sizeof(float)));
    }
    /* the held-out eval of the final weights, scored as ref_train_eval does */
    int32_t *pred = malloc((size_t)B * T * sizeof(int32_t));
    for (int k = 0; k < EVAL_BATCHES; k++) {
        CHECK(pt_dataset_batch(data, PT_SPLIT_EVAL, k, 0, B, T, tok, tgt));
        CHECK(be->memcpy_h2d(stream, pt_model_slot_tokens(r->m, 0), tok, (size_t)B * T * 4));
        CHECK(be->memcpy_h2d(stream, pt_model_slot_targets(r->m, 0), tgt, (size_t)B * T * 4));
        CHECK(pt_model_forward(r->m, 0));
        CHECK(pt_eval_score_slot(r->m, 0, data, tgt, B, T, pred, &r->eval));
        CHECK(pt_model_slot_release(r->m, 0));
    }
    r->eval.loss = r->eval.n_targets > 0 ? r->eval.loss / (double)r->eval.n_targets : 0;
    free(pred);
    free(ss);
    free(tok);
    free(tgt);
}

/* The reference above is train.h's step written out; this checks it against the real
 * single-process trainer (ref_trainer), bit for bit, so the pipeline is compared with `pipetrain
 * train` on one process. */
static int check_trainer(const pt_model_config *cfg, const char *model, const args *a, int M, int D,
                         const reference *r)
{
    pt_train_cfg tc;
    pt_train_cfg_defaults(&tc);
    tc.model = model;
    tc.data = "builtin";
    tc.seed = SEED;
    tc.steps = a->steps;
    tc.threads = a->threads;
    tc.micro_batches = M * D;
    tc.micro_batch_size = a->B;
    tc.seq_len = a->T;
    pt_adamw_cfg ac = adamw_cfg();
    tc.lr = ac.lr;
    tc.weight_decay = ac.weight_decay;
    tc.grad_clip = ac.grad_clip;
    tc.beta1 = ac.beta1;
    tc.beta2 = ac.beta2;
    tc.eps = ac.eps;
    ref_trainer *t;
    CHECK(ref_trainer_create(&tc, &t));
    for (int s = 0; s < a->steps; s++) {
        pt_step_stats st;
        CHECK(ref_train_step(t, s, lr_at(s, a->steps), &st));
    }
    pt_model *m = ref_trainer_model(t);
    size_t n = pt_model_n_params(m);
    float *h = malloc(n * sizeof(float));
    pt_stream *ts = pt_model_stream(m);
    CHECK(pt_model_backend(m)->memcpy_d2h(ts, h, pt_model_params(m), n * sizeof(float)));
    int bad = n != r->n_params || memcmp(h, r->snap[a->steps - 1], n * sizeof(float)) != 0;
    if (bad)
        fprintf(stderr, "rank %d: %s M=%d: the written-out reference differs from ref_trainer after %d steps\n",
                g_rank, cfg->name, M * D, a->steps);
    free(h);
    ref_trainer_destroy(t);
    return bad;
}

/* ---- plans ---- */

/* "uniform" and "time" from the partitioner; "manual": an uneven layout (1, 2, 1, 2, ... and the
 * rest on the last chunk) through pt_plan_from_layout. NULL when the model has too few layers. */
static pt_plan *make_plan(const pt_model_config *cfg, const char *method, const char *sched, int P, int V, int D,
                          int M, int B, int T, char *why, size_t why_cap)
{
    int L = pt_model_n_layers(cfg), NV = P * V;
    if (NV > L) {
        snprintf(why, why_cap, "%d chunks > %d layers", NV, L);
        return NULL;
    }
    pt_plan *p = NULL;
    pt_device dev;
    CHECK(pt_device_load("cpu", &dev));
    pt_topology topo;
    CHECK(pt_topology_init(&topo, &dev, 1, P * D));
    if (strcmp(method, "manual") == 0) {
        char layout[512];
        size_t off = 0;
        int used = 0;
        for (int k = 0; k < NV; k++) {
            int n = k == NV - 1 ? L - used : 1 + (k % 2);
            if (k < NV - 1 && L - used - n < NV - 1 - k)
                n = 1;
            used += n;
            off += (size_t)snprintf(layout + off, sizeof(layout) - off, "%s%d", k ? "," : "", n);
        }
        pt_status st = pt_plan_from_layout(cfg, layout, V, &p);
        if (st != PT_OK)
            die_status("pt_plan_from_layout", st);
        p->n_replicas = D;
        p->micro_batch_size = B;
        p->n_microbatches = M;
        p->seq_len = T;
        snprintf(p->schedule, sizeof(p->schedule), "%s", sched);
        CHECK(pt_plan_price(p, cfg, &dev, &topo, NULL));
        return p;
    }
    pt_plan_request rq;
    pt_plan_request_init(&rq);
    rq.method = method;
    rq.n_devices = P * D;
    rq.n_stages = P;
    rq.n_replicas = D;
    rq.n_chunks = V;
    rq.schedule = sched;
    rq.micro_batch_size = B;
    rq.n_microbatches = M;
    rq.seq_len = T;
    rq.recompute = 0;
    pt_status st = pt_plan_make(cfg, &dev, &topo, NULL, &rq, &p);
    if (st != PT_OK)
        die_status("pt_plan_make", st);
    return p;
}

static int sched_chunks(const char *name)
{
    return strcmp(name, "interleaved") == 0 || strcmp(name, "zbv") == 0 || strcmp(name, "looped-bfs") == 0 ? 2 : 1;
}

/* ---- comparison ---- */

/* Compares this rank's chunks with the reference after `step`; returns the number of mismatches
 * and the largest relative difference seen. */
static int compare(pt_runtime *rt, const reference *r, int step, double tol, const pt_backend *be, pt_stream *stream,
                   double *max_rel, const char *tag)
{
    int bad = 0;
    for (int c = 0; c < pt_runtime_n_chunks(rt); c++) {
        pt_model *m = pt_runtime_chunk_model(rt, c);
        size_t n = pt_model_n_params(m);
        float *h = malloc(n * sizeof(float));
        CHECK(be->memcpy_d2h(stream, h, pt_model_params(m), n * sizeof(float)));
        for (int t = 0; t < pt_model_n_tensors(m); t++) {
            const pt_param *p = pt_model_tensor(m, t);
            const pt_param *q = pt_model_find_tensor(r->m, p->name);
            if (!q || q->numel != p->numel) {
                fprintf(stderr, "rank %d %s: tensor %s not in the reference\n", g_rank, tag, p->name);
                bad++;
                continue;
            }
            const float *x = h + p->offset, *y = r->snap[step] + q->offset;
            if (memcmp(x, y, p->numel * sizeof(float)) == 0)
                continue;
            /* Bitwise (tol 0), or the tensor's relative L2 difference ||x - y|| / ||y|| within tol:
             * element-wise relative error is meaningless for weights near 0, whose AdamW update
             * g / (sqrt(v) + eps) turns summation-order noise of tiny gradients into O(lr) steps. */
            double dd = 0, yy = 0;
            size_t first = p->numel;
            for (size_t i = 0; i < p->numel; i++) {
                double d = (double)x[i] - y[i];
                dd += d * d;
                yy += (double)y[i] * y[i];
                if (d != 0 && first == p->numel)
                    first = i;
            }
            double rel = sqrt(dd) / (sqrt(yy) + 1e-30);
            if (rel > *max_rel)
                *max_rel = rel;
            if (tol == 0 || rel > tol) {
                if (bad < 3)
                    fprintf(stderr,
                            "rank %d %s step %d: %s (chunk %d, vstage %d) differs: relative L2 %.3g; first at [%zu] "
                            "%.9g, reference %.9g\n",
                            g_rank, tag, step, p->name, c, pt_runtime_chunk_vstage(rt, c), rel, first, x[first],
                            y[first]);
                bad++;
            }
        }
        free(h);
    }
    return bad;
}

static double world_sum(double x)
{
    if (!g_comm || g_world == 1)
        return x;
    CHECK(pt_comm_allreduce_f64(g_comm, NULL, &x, 1, pt_deadline_after_ms(120000)));
    return x;
}

static double world_max(double x)
{
    if (!g_comm || g_world == 1)
        return x;
    double *v = calloc((size_t)g_world, sizeof(double));
    v[g_rank] = x;
    CHECK(pt_comm_allreduce_f64(g_comm, NULL, v, (size_t)g_world, pt_deadline_after_ms(120000)));
    double m = v[0];
    for (int i = 1; i < g_world; i++)
        m = v[i] > m ? v[i] : m;
    free(v);
    return m;
}

static int parse_m(const char *tok, int P)
{
    if (strcmp(tok, "P") == 0)
        return P;
    if (strcmp(tok, "2P+1") == 0)
        return 2 * P + 1;
    return atoi(tok);
}

/* --zero-vs: pass 0 records step s's loss and every local chunk's weights; pass 1 compares, bit for
 * bit. Returns the mismatches. */
static int zero_check(pt_runtime *rt, int pass, int s, double loss, double *zloss, float **zsnap,
                      const pt_backend *be, pt_stream *stream, const char *tag)
{
    int bad = 0;
    if (pass == 0)
        zloss[s] = loss;
    else if (loss != zloss[s]) {
        fprintf(stderr, "rank %d %s step %d: --zero 1 loss %.17g, --zero 0 %.17g\n", g_rank, tag, s, loss, zloss[s]);
        bad++;
    }
    for (int c = 0; c < pt_runtime_n_chunks(rt) && c < 256; c++) {
        pt_model *m = pt_runtime_chunk_model(rt, c);
        size_t n = pt_model_n_params(m);
        float *h = malloc(n * sizeof(float));
        CHECK(be->memcpy_d2h(stream, h, pt_model_params(m), n * sizeof(float)));
        float **slot = &zsnap[s * 256 + c];
        if (pass == 0) {
            *slot = h;
            continue;
        }
        for (int t = 0; t < pt_model_n_tensors(m) && *slot; t++) {
            const pt_param *p = pt_model_tensor(m, t);
            if (memcmp(h + p->offset, *slot + p->offset, p->numel * sizeof(float)) != 0) {
                if (bad < 3)
                    fprintf(stderr, "rank %d %s step %d: %s (chunk %d) differs between --zero 1 and --zero 0\n",
                            g_rank, tag, s, p->name, c);
                bad++;
            }
        }
        free(h);
    }
    return bad;
}

/* ---- modes ---- */

static int mode_equiv(args *a, const pt_backend *be, pt_stream *stream)
{
    if (a->sched_file) {
        /* A schedule file: its P, V and M; one "schedule" in the loops below. */
        pt_schedule *fs;
        CHECK(pt_sched_load(a->sched_file, &fs));
        if (fs->n_ranks != a->P) {
            fprintf(stderr, "%s is for %d ranks, not --P %d\n", a->sched_file, fs->n_ranks, a->P);
            pt_sched_destroy(fs);
            return 1;
        }
        a->file_m = fs->n_microbatches;
        a->file_v = fs->n_chunks;
        a->schedules = fs->n_chunks > 1 ? "interleaved" : "1f1b"; /* pricing only; the file is what runs */
        pt_sched_destroy(fs);
    }
    int P = a->P, D = a->D, fails = 0, runs = 0, skipped = 0;
    char models[512], *save_m = NULL;
    snprintf(models, sizeof(models), "%s", a->models);
    pt_dataset *data;
    CHECK(pt_dataset_open("builtin", SEED, &data));
    for (char *mname = strtok_r(models, ",", &save_m); mname; mname = strtok_r(NULL, ",", &save_m)) {
        pt_model_config cfg;
        CHECK(pt_model_config_load(mname, &cfg));
        char mbs[128], *save_mb = NULL;
        snprintf(mbs, sizeof(mbs), "%s", a->mbs);
        int done_m[16], n_done = 0;
        for (char *mt = strtok_r(mbs, ",", &save_mb); mt; mt = strtok_r(NULL, ",", &save_mb)) {
            int M = a->sched_file ? a->file_m : parse_m(mt, P), dup = 0;
            for (int q = 0; q < n_done; q++)
                dup |= done_m[q] == M;
            if (dup || M < 1 || n_done == 16)
                continue;
            done_m[n_done++] = M;
            reference ref;
            reference_run(&cfg, a, M, D, data, be, stream, &ref);
            if (a->check_trainer && g_rank == 0) {
                int tb = check_trainer(&cfg, mname, a, M, D, &ref);
                fails += tb;
                LOG0("%s reference == ref_trainer (%s, M=%d, %d steps)\n", tb ? "FAIL" : "ok", mname, M * D, a->steps);
            }
            char scheds[256], *save_s = NULL;
            snprintf(scheds, sizeof(scheds), "%s", a->schedules);
            for (char *sn = strtok_r(scheds, ",", &save_s); sn; sn = strtok_r(NULL, ",", &save_s)) {
                char parts[128], *save_p = NULL;
                snprintf(parts, sizeof(parts), "%s", a->partitions);
                for (char *pm = strtok_r(parts, ",", &save_p); pm; pm = strtok_r(NULL, ",", &save_p)) {
                    char tag[256], why[128] = "";
                    int V = a->sched_file ? a->file_v : sched_chunks(sn);
                    snprintf(tag, sizeof(tag), "%s %s P=%d V=%d D=%d M=%d %s", cfg.name[0] ? cfg.name : mname,
                             a->sched_file ? a->sched_file : sn, P, V, D, M, pm);
                    pt_plan *plan = make_plan(&cfg, pm, sn, P, V, D, M, a->B, a->T, why, sizeof(why));
                    if (!plan) {
                        LOG0("skip %s (%s)\n", tag, why);
                        skipped++;
                        continue;
                    }
                    for (int v = 0; a->recompute && v < plan->n_vstages; v++)
                        plan->recompute[v] = 1;
                    pt_schedule *sc;
                    if (a->sched_file)
                        CHECK(pt_sched_load(a->sched_file, &sc));
                    else
                        CHECK(pt_sched_generate(sn, P, V, M, NULL, &sc));
                    /* --zero-vs: pass 0 keeps every step's loss and weights, pass 1 (ZeRO-1) must match */
                    int passes = a->zero_vs || a->overlap_vs ? 2 : 1, zbad = 0;
                    double zloss[64];
                    float **zsnap = calloc((size_t)(a->steps > 0 ? a->steps : 1) * 256, sizeof(float *));
                    int bad = 0;
                    double max_rel = 0, loss_diff = 0;
                    for (int zp = 0; zp < passes; zp++) {
                    plan->zero = a->zero_vs ? zp : a->zero;
                        pt_runtime_opts ro = { .cfg = &cfg, .plan = plan, .sched = sc, .comm = g_comm, .be = be,
                                               .stream = stream, .adamw = adamw_cfg(), .seed = SEED,
                                               .timeout_ms = a->timeout_ms,
                                               .overlap = a->overlap_vs ? zp : a->overlap };
                        pt_runtime *rt;
                        CHECK(pt_runtime_create(&ro, &rt));
                        for (int s = 0; s < a->steps; s++) {
                            pt_runtime_step_info si;
                            pt_status st = pt_runtime_step(rt, data, s, lr_at(s, a->steps), &si);
                            if (st != PT_OK)
                                die_status(tag, st);
                            double ld = fabs(si.loss - ref.loss[s]) / (fabs(ref.loss[s]) + 1e-30);
                            loss_diff = ld > loss_diff ? ld : loss_diff;
                            if ((a->tol == 0 && si.loss != ref.loss[s]) || ld > 1e-6) {
                                fprintf(stderr, "rank %d %s step %d: loss %.17g, reference %.17g\n", g_rank, tag, s,
                                        si.loss, ref.loss[s]);
                                bad++;
                            }
                            bad += compare(rt, &ref, s, a->tol, be, stream, &max_rel, tag);
                            if ((a->zero_vs || a->overlap_vs) && s < 64)
                                zbad += zero_check(rt, zp, s, si.loss, zloss, zsnap, be, stream, tag);
                        }
                        /* The held-out eval through the pipeline scores what one process scores. */
                        pt_eval_stats ev;
                        pt_status est = pt_runtime_eval(rt, data, EVAL_BATCHES, 0, &ev);
                        if (est != PT_OK)
                            die_status(tag, est);
                        double erel = fabs(ev.loss - ref.eval.loss) / (fabs(ref.eval.loss) + 1e-30);
                        if (ev.n_targets != ref.eval.n_targets || ev.n_total != ref.eval.n_total ||
                            (a->tol == 0 && (ev.loss != ref.eval.loss || ev.n_correct != ref.eval.n_correct)) ||
                            erel > (a->tol > 0 ? a->tol : 1e-6)) {
                            fprintf(stderr, "rank %d %s: eval loss %.17g on %lld targets (%lld/%lld right), reference "
                                            "%.17g on %lld (%lld/%lld)\n",
                                    g_rank, tag, ev.loss, (long long)ev.n_targets, (long long)ev.n_correct,
                                    (long long)ev.n_total, ref.eval.loss, (long long)ref.eval.n_targets,
                                    (long long)ref.eval.n_correct, (long long)ref.eval.n_total);
                            bad++;
                        }
                        /* Activation slots follow the schedule. */
                        int s_rank = pt_runtime_stage_rank(rt);
                        for (int c = 0; c < pt_runtime_n_chunks(rt); c++) {
                            int slots = pt_runtime_chunk_slots(rt, c), peak = pt_runtime_chunk_peak_inflight(rt, c);
                            int want_max = !a->sched_file && strcmp(sn, "1f1b") == 0 ? P - s_rank : M;
                            if (want_max > M)
                                want_max = M;
                            if (peak > slots || slots > want_max ||
                                (!a->sched_file && strcmp(sn, "gpipe") == 0 && (slots != M || peak != M))) {
                                fprintf(stderr, "rank %d %s: chunk %d holds %d slots (peak in use %d); expected at most %d%s\n",
                                        g_rank, tag, c, slots, peak, want_max,
                                        !a->sched_file && strcmp(sn, "gpipe") == 0 ? " and exactly M" : "");
                                bad++;
                            }
                        }
                        pt_runtime_destroy(rt);
                    }
                    for (int q = 0; q < (a->steps > 0 ? a->steps : 1) * 256; q++)
                        free(zsnap[q]);
                    free(zsnap);
                    if ((a->zero_vs || a->overlap_vs) && world_sum(zbad) > 0) {
                        LOG0("FAIL %s: %s\n", tag, a->overlap_vs ? "--overlap 1 differs from --overlap 0 (the messages "
                                                                   "above say --zero for both)"
                                                                 : "--zero 1 differs from --zero 0");
                        bad++;
                    }
                    pt_sched_destroy(sc);
                    pt_plan_destroy(plan);
                    double all_bad = world_sum(bad);
                    double rel = world_max(max_rel);
                    runs++;
                    if (all_bad > 0)
                        fails++;
                    if (!a->quiet || all_bad > 0)
                        LOG0("%s %s: %d steps, max rel diff %.3g\n", all_bad > 0 ? "FAIL" : "ok", tag, a->steps, rel);
                    (void)loss_diff;
                }
            }
            reference_free(&ref);
        }
    }
    pt_dataset_close(data);
    LOG0("equiv P=%d D=%d: %d configurations, %d failed, %d skipped\n", P, D, runs, fails, skipped);
    return fails ? 1 : 0;
}

static int mode_fault(const args *a, const pt_backend *be, pt_stream *stream)
{
    pt_model_config cfg;
    CHECK(pt_model_config_load("gpt2-tiny", &cfg));
    pt_dataset *data;
    CHECK(pt_dataset_open("builtin", SEED, &data));
    char why[64];
    int M = 2 * a->P;
    pt_plan *plan = make_plan(&cfg, "uniform", "1f1b", a->P, 1, a->D, M, a->B, a->T, why, sizeof(why));
    pt_schedule *sc;
    CHECK(pt_sched_generate("1f1b", a->P, 1, M, NULL, &sc));
    pt_runtime_opts ro = { .cfg = &cfg, .plan = plan, .sched = sc, .comm = g_comm, .be = be, .stream = stream,
                           .adamw = adamw_cfg(), .seed = 1, .timeout_ms = a->timeout_ms, .overlap = a->overlap };
    pt_runtime *rt;
    CHECK(pt_runtime_create(&ro, &rt));
    CHECK(pt_runtime_step(rt, data, 0, 1e-3f, NULL));
    /* The launcher stops the other ranks (SIGTERM) as soon as one dies; the survivors ignore that
     * here so that what is tested is the runtime's own timeout and its message. The launcher's
     * SIGKILL after its grace period still bounds the test. */
    if (g_rank != a->victim)
        signal(SIGTERM, SIG_IGN);
    if (g_rank == a->victim) {
        /* Die in the middle of step 1: SIGALRM (default action: terminate) 1 ms into the step,
         * about one forward in; a step takes several ms here. */
        fprintf(stderr, "rank %d: dying 1 ms into step 1 (fault test)\n", g_rank);
        fflush(stderr);
        struct itimerval it = { .it_interval = { 0, 0 }, .it_value = { 0, 1000 } };
        setitimer(ITIMER_REAL, &it, NULL);
        pt_runtime_step(rt, data, 1, 1e-3f, NULL);
        pt_runtime_step(rt, data, 2, 1e-3f, NULL);
        fprintf(stderr, "rank %d: still alive after two steps; the fault test did not kill me\n", g_rank);
        raise(SIGKILL);
    }
    pt_status st = pt_runtime_step(rt, data, 1, 1e-3f, NULL);
    if (st == PT_OK) {
        fprintf(stderr, "rank %d: step 1 succeeded although rank %d died\n", g_rank, a->victim);
        return 1;
    }
    fprintf(stderr, "rank %d: step failed as expected: %s\n", g_rank, pt_last_error());
    fflush(stderr);
    pt_runtime_destroy(rt);
    pt_sched_destroy(sc);
    pt_plan_destroy(plan);
    pt_dataset_close(data);
    return 3; /* a failing rank, as in a real run */
}

/* zero_mixed: rank 0 asks for ZeRO-1 and the others do not (ranks launched with different
 * --zero): every rank's create is refused, naming the count and the fix. overlap_mixed: the same
 * with --overlap. */
static int mode_zero_mixed(const args *a, const pt_backend *be, pt_stream *stream)
{
    int ovl = strcmp(a->mode, "overlap_mixed") == 0;
    pt_model_config cfg;
    CHECK(pt_model_config_load("gpt2-tiny", &cfg));
    char why[64];
    int M = 2;
    pt_plan *plan = make_plan(&cfg, "uniform", "1f1b", a->P, 1, a->D, M, a->B, a->T, why, sizeof(why));
    plan->zero = !ovl && g_rank == 0;
    pt_schedule *sc;
    CHECK(pt_sched_generate("1f1b", a->P, 1, M, NULL, &sc));
    pt_runtime_opts ro = { .cfg = &cfg, .plan = plan, .sched = sc, .comm = g_comm, .be = be, .stream = stream,
                           .adamw = adamw_cfg(), .seed = 1, .timeout_ms = a->timeout_ms,
                           .overlap = ovl && g_rank == 0 };
    pt_runtime *rt = NULL;
    pt_status st = pt_runtime_create(&ro, &rt);
    int ok = st == PT_EINVAL &&
             (ovl ? strstr(pt_last_error(), "overlap the gradient reduction with the backward (--overlap 1) and the "
                                            "others do not") &&
                        strstr(pt_last_error(), "give every rank the same --overlap")
                  : strstr(pt_last_error(), "shard the optimizer (--zero 1) and the others do not") &&
                        strstr(pt_last_error(), "give every rank the same --zero"));
    if (!ok)
        fprintf(stderr, "rank %d: mixed --zero gave status %d: %s\n", g_rank, (int)st, st ? pt_last_error() : "ok");
    else if (g_rank == 0)
        printf("zero_mixed: refused: %s\n", pt_last_error());
    pt_runtime_destroy(rt);
    pt_sched_destroy(sc);
    pt_plan_destroy(plan);
    return ok ? 0 : 1;
}

static int mode_mem(const args *a, const pt_backend *be, pt_stream *stream)
{
    pt_model_config cfg;
    CHECK(pt_model_config_load(a->models, &cfg));
    pt_dataset *data;
    CHECK(pt_dataset_open("builtin", SEED, &data));
    char why[64];
    int M = a->P;
    int rc = 0;
    /* Refused on fewer stages: every rank builds the same small plan on one process-local view. */
    if (g_rank == 0 && a->refuse_stages == 1) {
        pt_plan *p1 = make_plan(&cfg, "uniform", "1f1b", 1, 1, 1, M, a->B, a->T, why, sizeof(why));
        pt_schedule *s1;
        CHECK(pt_sched_generate("1f1b", 1, 1, M, NULL, &s1));
        pt_runtime_opts ro = { .cfg = &cfg, .plan = p1, .sched = s1, .comm = NULL, .be = be, .stream = stream,
                               .adamw = adamw_cfg(), .seed = 1, .mem_limit_bytes = a->mem_limit };
        pt_runtime *rt = NULL;
        pt_status st = pt_runtime_create(&ro, &rt);
        if (st != PT_ENOMEM) {
            fprintf(stderr, "rank 0: 1 stage under --mem-limit %zu was not refused (%s)\n", a->mem_limit,
                    pt_status_name(st));
            rc = 1;
        } else {
            printf("1 stage refused: %s\n", pt_last_error());
            if (!strstr(pt_last_error(), "stages would fit")) {
                fprintf(stderr, "rank 0: the refusal does not say how many stages fit\n");
                rc = 1;
            }
        }
        pt_runtime_destroy(rt);
        pt_sched_destroy(s1);
        pt_plan_destroy(p1);
    }
    pt_plan *plan = make_plan(&cfg, "uniform", "1f1b", a->P, 1, 1, M, a->B, a->T, why, sizeof(why));
    pt_schedule *sc;
    CHECK(pt_sched_generate("1f1b", a->P, 1, M, NULL, &sc));
    pt_runtime_opts ro = { .cfg = &cfg, .plan = plan, .sched = sc, .comm = g_comm, .be = be, .stream = stream,
                           .adamw = adamw_cfg(), .seed = 1, .timeout_ms = a->timeout_ms,
                           .mem_limit_bytes = a->mem_limit };
    pt_runtime *rt;
    CHECK(pt_runtime_create(&ro, &rt));
    for (int s = 0; s < 2; s++) {
        pt_runtime_step_info si;
        CHECK(pt_runtime_step(rt, data, s, 1e-3f, &si));
        LOG0("step %d loss %.4f\n", s, si.loss);
    }
    /* The runtime's own allocation, and this process's peak through the backend (slots, send
     * staging and everything the steps touched; rank 0 also built and freed the refused plan,
     * which never allocated: the prediction refused it first). */
    size_t used = pt_runtime_peak_bytes(rt), peak = pt_backend_bytes_peak();
    printf("rank %d: %zu bytes allocated, peak %zu (limit %zu)\n", g_rank, used, peak, a->mem_limit);
    if (used > a->mem_limit || peak > a->mem_limit) {
        fprintf(stderr, "rank %d: allocated %zu bytes (peak %zu) over the limit %zu\n", g_rank, used, peak,
                a->mem_limit);
        rc = 1;
    }
    pt_runtime_destroy(rt);
    pt_sched_destroy(sc);
    pt_plan_destroy(plan);
    pt_dataset_close(data);
    return world_sum(rc) > 0 ? 1 : 0;
}

static int mode_bubble(const args *a, const pt_backend *be, pt_stream *stream)
{
    pt_model_config cfg;
    CHECK(pt_model_config_load(a->models, &cfg));
    pt_dataset *data;
    CHECK(pt_dataset_open("builtin", SEED, &data));
    char why[64];
    int M = 8;
    pt_plan *plan = make_plan(&cfg, "uniform", "1f1b", a->P, 1, 1, M, a->B, a->T, why, sizeof(why));
    pt_schedule *sc;
    CHECK(pt_sched_generate("1f1b", a->P, 1, M, NULL, &sc));
    /* Up to three measurements: the comparison holds when the machine leaves the ranks their
     * cores; a neighbour stealing a core during one window adds idle time no model predicts. */
    int rc = 1;
    for (int attempt = 0; attempt < 3 && rc != 0; attempt++) {
        pt_profile *prof;
        CHECK(pt_profile_create(g_rank, g_comm ? pt_comm_clock_offset_ns(g_comm) : 0, &prof));
        pt_runtime_opts ro = { .cfg = &cfg, .plan = plan, .sched = sc, .comm = g_comm, .be = be, .stream = stream,
                               .adamw = adamw_cfg(), .seed = 1, .timeout_ms = a->timeout_ms, .profile = prof };
        pt_runtime *rt;
        CHECK(pt_runtime_create(&ro, &rt));
        pt_profile_set_enabled(prof, 0);
        CHECK(pt_runtime_step(rt, data, 0, 1e-3f, NULL)); /* warm-up */
        pt_profile_set_enabled(prof, 1);
        for (int s = 1; s <= a->steps; s++)
            CHECK(pt_runtime_step(rt, data, s, 1e-3f, NULL));
        pt_prof_event *all = NULL;
        size_t n = 0;
        double peak[64] = { 0 };
        CHECK(pt_profile_gather(prof, g_comm, pt_deadline_after_ms(60000), &all, &n, peak));
        int bad = 0;
        if (g_rank == 0) {
            pt_profile_report_opts po = { .sched = sc, .plan = plan, .cfg = &cfg, .n_world = g_world,
                                          .peak_flops = 540e9, .peak_bytes = peak, .title = "bubble test" };
            pt_profile_summary sum;
            CHECK(pt_profile_summarize(all, n, &po, &sum));
            printf("attempt %d: measured bubble %.1f%% (rank0 %.1f%%, rank1 %.1f%%), predicted %.1f%%, step %.2f ms, "
                   "window %.2f ms predicted %.2f ms\n",
                   attempt + 1, 100 * sum.bubble_overall, 100 * sum.bubble[0], 100 * sum.bubble[1 % g_world],
                   100 * sum.pred_bubble_overall, 1e3 * sum.step_time_s, 1e3 * sum.window_s,
                   1e3 * sum.pred_step_time_s);
            double diff = fabs(sum.bubble_overall - sum.pred_bubble_overall);
            if (!sum.has_prediction || diff > a->bubble_tol) {
                fprintf(stderr, "measured bubble %.1f%% differs from the prediction %.1f%% by more than %.0f points\n",
                        100 * sum.bubble_overall, 100 * sum.pred_bubble_overall, 100 * a->bubble_tol);
                bad = 1;
            }
            const char *dir = getenv("RT_PROFILE_DIR");
            if (dir)
                CHECK(pt_profile_write_dir(dir, all, n, &po, &sum));
            pt_profile_summary_free(&sum);
        }
        free(all);
        pt_runtime_destroy(rt);
        pt_profile_destroy(prof);
        rc = world_sum(bad) > 0 ? 1 : 0;
    }
    pt_sched_destroy(sc);
    pt_plan_destroy(plan);
    pt_dataset_close(data);
    return rc;
}

/* Bad input is refused with a sentence, never run: plan/schedule mismatch, wrong world size. */
static int expect_refusal(const char *what, pt_status st, pt_status want, const char *needle)
{
    if (st == want && strstr(pt_last_error(), needle)) {
        printf("ok %s: %s\n", what, pt_last_error());
        return 0;
    }
    fprintf(stderr, "FAIL %s: got %s '%s', wanted %s mentioning '%s'\n", what, pt_status_name(st), pt_last_error(),
            pt_status_name(want), needle);
    return 1;
}

static int mode_bad(const args *a, const pt_backend *be, pt_stream *stream)
{
    pt_model_config cfg;
    CHECK(pt_model_config_load("gpt2-tiny", &cfg));
    char why[64];
    int bad = 0;
    pt_plan *p2 = make_plan(&cfg, "uniform", "1f1b", 2, 1, 1, 2, a->B, a->T, why, sizeof(why));
    pt_schedule *s1, *s2;
    CHECK(pt_sched_generate("1f1b", 1, 1, 2, NULL, &s1));
    CHECK(pt_sched_generate("1f1b", 2, 1, 2, NULL, &s2));
    pt_runtime_opts ro = { .cfg = &cfg, .plan = p2, .sched = s1, .comm = NULL, .be = be, .stream = stream,
                           .adamw = adamw_cfg(), .seed = 1 };
    pt_runtime *rt = NULL;
    bad += expect_refusal("schedule for another P", pt_runtime_create(&ro, &rt), PT_EINVAL, "generate both");
    ro.sched = s2;
    bad += expect_refusal("too few ranks", pt_runtime_create(&ro, &rt), PT_EINVAL, "start 2");
    pt_runtime_destroy(rt);
    pt_sched_destroy(s1);
    pt_sched_destroy(s2);
    pt_plan_destroy(p2);
    return bad ? 1 : 0;
}

static void on_log(void *ctx, const char *line)
{
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

static void on_event(void *ctx, const pt_train_event *ev)
{
    (void)ctx;
    if (ev->kind == PT_TRAIN_EV_STEP)
        printf("step %lld/%lld loss %.4f %.1f ms\n", (long long)ev->step, (long long)ev->total, ev->st->loss,
               ev->step_ms);
    else if (ev->kind == PT_TRAIN_EV_CKPT)
        printf("checkpoint %s\n", ev->ckpt_path ? ev->ckpt_path : "");
    fflush(stdout);
}

/* The multi-rank training entry with checkpoints and a profile, then a resumed run. */
static int mode_train(const args *a)
{
    const char *dir = getenv("RT_OUT_DIR") ? getenv("RT_OUT_DIR") : ".";
    char prof[1024], ckpt[1024];
    snprintf(prof, sizeof(prof), "%s/rt_train_profile", dir);
    snprintf(ckpt, sizeof(ckpt), "%s/rt_train_ckpt", dir);
    pt_runtime_train_args ta;
    memset(&ta, 0, sizeof(ta));
    pt_train_cfg_defaults(&ta.train);
    ta.train.model = a->models;
    ta.train.steps = a->steps;
    ta.train.threads = a->threads;
    ta.train.micro_batches = 2 * a->P;
    ta.train.micro_batch_size = a->B;
    ta.train.seq_len = a->T;
    ta.train.warmup = 1;
    ta.train.ckpt_dir = ckpt;
    ta.train.ckpt_every = a->steps;
    ta.stages = a->P;
    ta.replicas = a->D;
    ta.schedule = a->schedules;
    ta.partition = "time";
    ta.profile_dir = prof;
    ta.timeout_ms = a->timeout_ms;
    ta.on_event = on_event;
    ta.on_log = on_log;
    pt_train_summary sum;
    pt_status st = pt_runtime_train_main(&ta, &sum);
    if (st != PT_OK)
        die_status("pt_runtime_train_main", st);
    int rc = 0;
    if (g_rank == 0) {
        const char *files[] = { "trace.json", "timeline.svg", "summary.json" };
        for (int i = 0; i < 3; i++) {
            char path[1200];
            snprintf(path, sizeof(path), "%s/%s", prof, files[i]);
            if (access(path, R_OK) != 0) {
                fprintf(stderr, "missing %s\n", path);
                rc = 1;
            }
        }
        char path[1200];
        snprintf(path, sizeof(path), "%s/summary.json", prof);
        cJSON *j = NULL;
        if (pt_json_read_file(path, &j) == PT_OK) {
            const char *keys[] = { "step_time_s", "tokens_per_s", "flops_per_s", "mfu", "bubble", "comm_wait_s",
                                   "peak_bytes", "predicted" };
            for (int i = 0; i < 8; i++)
                if (!cJSON_GetObjectItemCaseSensitive(j, keys[i])) {
                    fprintf(stderr, "%s lacks %s\n", path, keys[i]);
                    rc = 1;
                }
            /* the CPU backend's timeline markers time the compute actions */
            const char *clk = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "compute_clock"));
            if (!clk || strncmp(clk, "host clock at each marker", 25) != 0) {
                fprintf(stderr, "%s: compute_clock is \"%s\", not the CPU backend's markers\n", path, clk ? clk : "");
                rc = 1;
            }
            cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "bubble");
            if (cJSON_GetArraySize(b) != a->P * a->D) {
                fprintf(stderr, "%s: bubble has %d ranks, not %d\n", path, cJSON_GetArraySize(b), a->P * a->D);
                rc = 1;
            }
            cJSON_Delete(j);
        } else {
            rc = 1;
        }
        printf("first run: %lld steps, final loss %.4f\n", (long long)sum.steps_done, sum.final_loss);
    }
    /* Resume: two more steps from the checkpoint just written. */
    ta.train.steps = a->steps + 2;
    ta.train.resume = 1;
    ta.train.ckpt_every = 0;
    ta.profile_dir = NULL;
    st = pt_runtime_train_main(&ta, &sum);
    if (st != PT_OK)
        die_status("pt_runtime_train_main (resume)", st);
    if (g_rank == 0)
        printf("resumed run: %lld steps done, final loss %.4f\n", (long long)sum.steps_done, sum.final_loss);
    if (sum.steps_done != a->steps + 2) {
        fprintf(stderr, "rank %d: resumed run ended at %lld steps, not %d\n", g_rank, (long long)sum.steps_done,
                a->steps + 2);
        rc = 1;
    }
    return rc;
}

/* ---- main ---- */

static void parse(int argc, char **argv, args *a)
{
    *a = (args){ .mode = "equiv", .nproc = 1, .P = 1, .D = 1, .steps = 3, .threads = 1, .B = 2, .T = 32,
                 .tol = 0, .models = "gpt2-tiny", .schedules = "gpipe,1f1b,interleaved,looped-bfs,zb-h1,zb-h2,zbv",
                 .partitions = "uniform,time,manual", .mbs = "1,P,2P+1", .victim = 1, .mem_limit = 0,
                 .refuse_stages = 1, .timeout_ms = 60000, .bubble_tol = 0.05 };
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
#define OPT(name) (strcmp(k, "--" name) == 0 && ++i)
        if (OPT("mode")) a->mode = v;
        else if (OPT("nproc")) a->nproc = atoi(v);
        else if (OPT("P")) a->P = atoi(v);
        else if (OPT("D")) a->D = atoi(v);
        else if (OPT("steps")) a->steps = atoi(v);
        else if (OPT("threads")) a->threads = atoi(v);
        else if (OPT("B")) a->B = atoi(v);
        else if (OPT("T")) a->T = atoi(v);
        else if (OPT("tol")) a->tol = atof(v);
        else if (OPT("models")) a->models = v;
        else if (OPT("schedules")) a->schedules = v;
        else if (OPT("partitions")) a->partitions = v;
        else if (OPT("mbs")) a->mbs = v;
        else if (OPT("victim")) a->victim = atoi(v);
        else if (OPT("mem-limit")) a->mem_limit = (size_t)atoll(v);
        else if (OPT("refuse-stages")) a->refuse_stages = atoi(v);
        else if (OPT("timeout-ms")) a->timeout_ms = atoll(v);
        else if (OPT("bubble-tol")) a->bubble_tol = atof(v);
        else if (OPT("eps")) g_eps = (float)atof(v);
        else if (OPT("schedule-file")) a->sched_file = v;
        else if (strcmp(k, "--quiet") == 0) a->quiet = 1;
        else if (strcmp(k, "--check-trainer") == 0) a->check_trainer = 1;
        else if (strcmp(k, "--recompute") == 0) a->recompute = 1;
        else if (OPT("zero")) a->zero = atoi(v);
        else if (strcmp(k, "--zero-vs") == 0) a->zero_vs = 1;
        else if (OPT("overlap")) a->overlap = atoi(v);
        else if (strcmp(k, "--overlap-vs") == 0) a->overlap_vs = 1;
        else {
            fprintf(stderr, "rt_driver: unknown option %s\n", k);
            exit(2);
        }
#undef OPT
    }
}

int main(int argc, char **argv)
{
    args a;
    parse(argc, argv, &a);
    if (a.nproc > 1 && !getenv("RANK")) {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
            return 1;
        self[n] = '\0';
        char **av = calloc((size_t)argc + 1, sizeof(char *));
        av[0] = self;
        for (int i = 1; i < argc; i++)
            av[i] = argv[i];
        pt_launch_opts lo = { .nproc = a.nproc, .nodes = 1, .node_rank = 0, .master = NULL };
        int code = 0;
        pt_status st = pt_launch(&lo, av, &code);
        free(av);
        if (st != PT_OK)
            fprintf(stderr, "rt_driver: %s\n", pt_last_error());
        return code ? code : st != PT_OK;
    }
    if (strcmp(a.mode, "train") == 0) {
        g_rank = getenv("RANK") ? atoi(getenv("RANK")) : 0;
        return mode_train(&a);
    }
    if (a.nproc > 1) {
        pt_comm_opts co = { .provider = NULL, .timeout_ms = a.timeout_ms, .config_hash = 42 };
        CHECK(pt_comm_create(&co, &g_comm));
        g_rank = pt_comm_rank(g_comm);
        g_world = pt_comm_size(g_comm);
    }
    const pt_backend *be;
    CHECK(pt_backend_get("cpu", &be));
    pt_stream *stream;
    CHECK(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = a.threads }, &stream));
    int rc;
    if (strcmp(a.mode, "equiv") == 0)
        rc = mode_equiv(&a, be, stream);
    else if (strcmp(a.mode, "fault") == 0)
        rc = mode_fault(&a, be, stream);
    else if (strcmp(a.mode, "mem") == 0)
        rc = mode_mem(&a, be, stream);
    else if (strcmp(a.mode, "zero_mixed") == 0 || strcmp(a.mode, "overlap_mixed") == 0)
        rc = mode_zero_mixed(&a, be, stream);
    else if (strcmp(a.mode, "bad") == 0)
        rc = mode_bad(&a, be, stream);
    else if (strcmp(a.mode, "bubble") == 0)
        rc = mode_bubble(&a, be, stream);
    else {
        fprintf(stderr, "rt_driver: unknown mode %s\n", a.mode);
        rc = 2;
    }
    be->stream_destroy(stream);
    if (g_comm && rc == 0)
        pt_comm_barrier(g_comm, NULL, pt_deadline_after_ms(60000));
    pt_comm_destroy(g_comm);
    return rc;
}
