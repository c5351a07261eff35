/* pt_runtime_train_main: a whole multi-rank training run from inside one rank — comm, plan,
 * schedule, runtime, the shared training loop (train.h) with the runtime as its step, checkpoints,
 * and the profile report (include/pipetrain/runtime.h, docs/pipeline.md). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipetrain/ckpt.h"
#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/runtime.h"
#include "pipetrain/timeutil.h"
#ifdef PT_RUNTIME_CUDA
#include "pipetrain/cuda.h"
#endif

/* Steps profiled for the end-of-run summary when no --profile directory was asked for. */
#define TM_SUMMARY_STEPS 20

/* The device this rank's stream opens on: on a device backend its local rank modulo the node's
 * GPUs, so ranks share GPUs when there are more local ranks than GPUs (two stages on one GPU);
 * otherwise the local rank (ignored by the CPU backend). */
static pt_status tm_device(const pt_backend *be, int local_rank, int *out)
{
    *out = local_rank;
#ifdef PT_RUNTIME_CUDA
    if (be->device_memory) {
        int n = 0;
        char why[256] = "";
        PT_CHECK(pt_cuda_device_count(&n, why, sizeof why));
        if (n <= 0)
            return pt_fail(PT_ENOTSUP, "backend %s: no CUDA device on this node (%s); use --backend cpu", be->name,
                           why);
        *out = local_rank % n;
    }
#else
    (void)be;
#endif
    return PT_OK;
}

typedef struct tm_ctx {
    const pt_runtime_train_args *a;
    pt_runtime *rt;
    pt_dataset *data;
    pt_comm *comm;
    pt_profile *prof;
    pt_ckpt_saver *saver;
    const char *run_json;
    int64_t first_step;
    int64_t tokens_per_step;
    int rank;
    uint64_t seed;
    char last_ckpt[512];
} tm_ctx;

static void tm_log(const pt_runtime_train_args *a, int rank, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tm_log(const pt_runtime_train_args *a, int rank, const char *fmt, ...)
{
    if (rank != 0 || !a->on_log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    a->on_log(a->log_ctx, line);
}

static pt_status tm_step(void *ctx, int64_t step, double lr, pt_step_stats *out)
{
    tm_ctx *t = ctx;
    /* Profile every step after the first of this run (the first warms caches and the transport);
     * without --profile only the next TM_SUMMARY_STEPS, for the summary printed at the end. */
    if (t->prof)
        pt_profile_set_enabled(t->prof, step > t->first_step &&
                                            (t->a->profile_dir || step <= t->first_step + TM_SUMMARY_STEPS));
    pt_runtime_step_info si;
    int64_t t0 = pt_now_ns();
    PT_CHECK(pt_runtime_step(t->rt, t->data, step, (float)lr, &si));
    memset(out, 0, sizeof(*out));
    out->loss = si.loss;
    out->grad_norm = si.grad_norm;
    out->lr = (float)lr;
    out->clip_scale = si.clip_scale;
    out->applied = si.applied;
    out->n_tokens = t->tokens_per_step;
    out->n_targets = si.n_tokens;
    /* The pipeline interleaves forward and backward: report the whole step as compute. */
    out->fwd_s = 0;
    out->bwd_s = pt_seconds_between(t0, pt_now_ns()) - si.comm_wait_s;
    out->optim_s = 0;
    if (t->a->after_step) /* after the step's own times */
        PT_CHECK(t->a->after_step(t->a->hook_ctx, step + 1));
    return PT_OK;
}

/* The held-out eval through the pipeline: the same batches and numbers as a one-process run. */
static pt_status tm_eval(void *ctx, pt_eval_stats *out)
{
    tm_ctx *t = ctx;
    return pt_runtime_eval(t->rt, t->data, t->a->train.eval_batches, t->a->eval_batch_seqs, out);
}

/* This rank's chunks' models and optimizers (at most 256), in chunk order; returns how many. */
static int tm_chunks(pt_runtime *rt, pt_model **models, pt_optim **optims)
{
    int V = pt_runtime_n_chunks(rt) < 256 ? pt_runtime_n_chunks(rt) : 256;
    for (int c = 0; c < V; c++) {
        models[c] = pt_runtime_chunk_model(rt, c);
        optims[c] = pt_runtime_chunk_optim(rt, c);
    }
    return V;
}

static pt_status tm_save(void *ctx, int64_t steps_done, const char **path)
{
    tm_ctx *t = ctx;
    pt_model *models[256];
    pt_optim *optims[256];
    int V = tm_chunks(t->rt, models, optims);
    pt_train_state st = { .step = steps_done, .data_step = steps_done, .seed = t->seed, .run_json = t->run_json };
    /* Returns once the tensors are staged; the writer compresses and commits in the background
     * while training goes on (the next save, or the end of the run, waits for it). */
    /* Data-parallel replicas hold the same tensors: replica 0 writes them, the others write empty
     * shards (loading goes by tensor name, so every replica reads replica 0's). */
    /* Data-parallel replicas hold the same tensors: replica 0 writes them, the others write empty
     * shards (loading goes by tensor name, so every replica reads replica 0's). */
    PT_CHECK(pt_ckpt_save(t->saver, t->comm, models, optims, pt_runtime_replica(t->rt) == 0 ? V : 0, &st));
    pt_ckpt_save_info si;
    pt_ckpt_saver_info(t->saver, &si);
    snprintf(t->last_ckpt, sizeof(t->last_ckpt), "%s/step_%06lld", t->a->train.ckpt_dir, (long long)steps_done);
    if (si.waited_for_step >= 0) /* the user should know a save stalled training */
        snprintf(t->last_ckpt + strlen(t->last_ckpt), sizeof(t->last_ckpt) - strlen(t->last_ckpt),
                 " (waited for the save of step %lld to finish first)", (long long)si.waited_for_step);
    *path = t->last_ckpt;
    return PT_OK;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; s && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ 0xff;
}

static int is_generator(const char *name)
{
    for (const char *const *g = pt_sched_generator_names(); *g; g++)
        if (strcmp(*g, name) == 0)
            return 1;
    return 0;
}

/* Per-stage costs from the planner's cost model, for the zero-bubble generators and the log. */
static pt_status plan_costs(const pt_model_config *cfg, const pt_plan *p, const pt_device *dev,
                            const pt_layer_times *measured, pt_sim_costs *c, double *arr)
{
    int L = pt_model_n_layers(cfg), NV = p->n_vstages;
    pt_layer_cost *lc = calloc((size_t)L, sizeof(*lc));
    if (!lc)
        return pt_fail(PT_ENOMEM, "out of host memory for layer costs");
    pt_status st = pt_cost_layers(cfg, p->micro_batch_size, p->seq_len, dev, measured, lc);
    if (st != PT_OK) {
        free(lc);
        return st;
    }
    memset(c, 0, sizeof(*c));
    c->n_vstages = NV;
    c->f = arr;
    c->b = arr + NV;
    c->i = arr + 2 * NV;
    c->w = arr + 3 * NV;
    c->act_bytes = arr + 4 * NV;
    c->boundary_bytes = arr + 5 * NV;
    for (int v = 0; v < NV; v++) {
        for (int l = p->first_layer[v]; l <= p->last_layer[v]; l++) {
            c->f[v] += lc[l].t_fwd;
            c->i[v] += lc[l].t_bwd_input;
            c->w[v] += lc[l].t_bwd_weight;
            c->act_bytes[v] += lc[l].act_bytes;
        }
        c->b[v] = c->i[v] + c->w[v];
        c->boundary_bytes[v] = lc[p->last_layer[v]].out_bytes;
    }
    c->link_latency_s = dev->intra_latency_s;
    c->link_bandwidth_Bps = dev->intra_bw_Bps;
    free(lc);
    return PT_OK;
}

pt_status pt_runtime_train_main(const pt_runtime_train_args *a, pt_train_summary *summary)
{
    const pt_train_cfg *tc = &a->train;
    pt_status st = PT_OK;
    pt_comm *comm = NULL;
    pt_dataset *data = NULL;
    pt_layer_times *measured = NULL;
    pt_plan *plan = NULL;
    pt_schedule *sc = NULL;
    const pt_backend *be = NULL;
    pt_stream *stream = NULL;
    pt_profile *prof = NULL;
    pt_runtime *rt = NULL;
    pt_ckpt_saver *saver = NULL;
    char *run_json = NULL;
    pt_train_state rs = { 0 };
    double *carr = NULL;
    pt_model_config cfg;
    int rank = 0, world = 1;
    if (summary)
        memset(summary, 0, sizeof(*summary));

    const char *sched_name = a->schedule ? a->schedule : "1f1b";
    int P = a->stages > 0 ? a->stages : 1, D = a->replicas > 0 ? a->replicas : 1;
    int M = tc->micro_batches, B = tc->micro_batch_size, T = tc->seq_len;
    int V = a->chunks;
    if (!is_generator(sched_name)) {
        PT_TRY(pt_sched_load(sched_name, &sc), out);
        P = sc->n_ranks;
        V = sc->n_chunks;
        M = sc->n_microbatches;
    }
    if (V <= 0)
        V = pt_sched_default_chunks(sched_name);
    if (tc->eval_batches > 0 && B > 0 && a->eval_batch_seqs % B != 0) {
        st = pt_fail(PT_EINVAL, "held-out eval batches of %d sequences cannot be cut into micro-batches of %d; make "
                                "the eval batch a multiple of --micro-batch-size",
                     a->eval_batch_seqs, B);
        goto out;
    }

    /* The job. The hash makes ranks started with different settings refuse each other. */
    uint64_t h = 1469598103934665603ull;
    char num[160];
    snprintf(num, sizeof(num), "P%d D%d V%d M%d B%d T%d seed%llu steps%lld", P, D, V, M, B, T,
             (unsigned long long)tc->seed, (long long)tc->steps);
    h = fnv1a(fnv1a(fnv1a(fnv1a(fnv1a(h, tc->model), sched_name), a->layout ? a->layout : a->partition), num),
              tc->data ? tc->data : "builtin");
    pt_comm_opts co = { .provider = a->provider, .timeout_ms = a->timeout_ms, .config_hash = h };
    PT_TRY(pt_comm_create(&co, &comm), out);
    rank = pt_comm_rank(comm);
    world = pt_comm_size(comm);
    if (world != P * D) {
        st = pt_fail(PT_EINVAL, "%d stages x %d replicas need %d ranks but the job has %d; use --nproc %d", P, D,
                     P * D, world, P * D);
        goto out;
    }

    PT_TRY(pt_model_config_load(tc->model, &cfg), out);
    PT_TRY(pt_model_config_set_head_split(&cfg, tc->head_split), out); /* auto: after the plan request */
    PT_TRY(pt_dataset_open(tc->data, tc->seed, &data), out);
    {
        char note[512];
        pt_dataset_fit_model(data, &cfg, note, sizeof note); /* the data's tokenizer sets the vocabulary */
        if (note[0])
            tm_log(a, rank, "%s", note);
    }
    PT_TRY(pt_dataset_set_batch(data, D * M * B,
                                tc->eval_batches > 0 ? (a->eval_batch_seqs > 0 ? a->eval_batch_seqs : B) : 0, T),
           out);

    /* Plan. */
    pt_device dev;
    pt_topology topo;
    PT_TRY(pt_device_load("cpu", &dev), out);
    /* The cpu device is one core; a rank computes on as many as it has threads. */
    dev.peak_flops *= tc->threads > 0 ? tc->threads : (double)sysconf(_SC_NPROCESSORS_ONLN);
    PT_TRY(pt_topology_init(&topo, &dev, 1, world), out);
    if (a->layer_costs)
        PT_TRY(pt_layer_times_load(a->layer_costs, &measured), out);
    const char *price_sched = is_generator(sched_name) ? sched_name : V > 1 ? "interleaved" : "1f1b";
    if (tc->head_split == PT_HEAD_SPLIT_AUTO && a->layout) {
        st = pt_fail(PT_EINVAL, "--head-split auto chooses the layers, which --layout names; give --head-split K "
                                "with --layout");
        goto out;
    }
    if (tc->head_split == PT_HEAD_SPLIT_AUTO && measured) /* a cost file was measured with its own split */
        PT_TRY(pt_model_config_set_head_split(&cfg, measured->cfg.head_split > 1 ? measured->cfg.head_split : 1),
               out);
    if (a->layout) {
        PT_TRY(pt_plan_from_layout(&cfg, a->layout, V, &plan), out);
        if (plan->n_stages != P) {
            st = pt_fail(PT_EINVAL, "--layout has %d chunks, which is %d stages of %d chunks, but %d stages were asked",
                         plan->n_vstages, plan->n_stages, V, P);
            goto out;
        }
        plan->n_replicas = D;
        plan->micro_batch_size = B;
        plan->n_microbatches = M;
        plan->seq_len = T;
        snprintf(plan->schedule, sizeof(plan->schedule), "%s", price_sched);
        PT_TRY(pt_plan_price(plan, &cfg, &dev, &topo, measured), out);
    } else {
        pt_plan_request rq;
        pt_plan_request_init(&rq);
        rq.method = a->partition ? a->partition : "time";
        rq.n_devices = world;
        rq.n_stages = P;
        rq.n_replicas = D;
        rq.n_chunks = V;
        rq.schedule = price_sched;
        rq.micro_batch_size = B;
        rq.n_microbatches = M;
        rq.seq_len = T;
        rq.recompute = 0;
        rq.mem_cap_bytes = (double)a->mem_limit_bytes;
        if (tc->head_split == PT_HEAD_SPLIT_AUTO && !measured) {
            int k = 1;
            double t_k = 0, t_1 = 0;
            PT_TRY(pt_plan_best_head_split(&cfg, &dev, &topo, &rq, &k, &t_k, &t_1), out);
            PT_TRY(pt_model_config_set_head_split(&cfg, k), out);
            tm_log(a, rank, "head split: auto chose %d LM-head layer%s (predicted step %.1f ms; %.1f ms with one)", k,
                   k == 1 ? "" : "s", 1e3 * t_k, 1e3 * t_1);
        }
        PT_TRY(pt_plan_make(&cfg, &dev, &topo, measured, &rq, &plan), out);
    }

    /* Schedule (zero-bubble generators place work by the plan's per-stage costs). */
    pt_sim_costs costs;
    carr = calloc((size_t)plan->n_vstages * 6, sizeof(double));
    if (!carr) {
        st = pt_fail(PT_ENOMEM, "out of host memory");
        goto out;
    }
    PT_TRY(plan_costs(&cfg, plan, &dev, measured, &costs, carr), out);
    if (!sc)
        PT_TRY(pt_sched_generate(sched_name, P, V, M, &costs, &sc), out);
    {
        pt_sim_result sim = { 0 };
        PT_TRY(pt_sched_simulate(sc, &costs, &sim), out);
        char ranges[512];
        size_t off = 0;
        for (int v = 0; v < plan->n_vstages && off < sizeof(ranges) - 16; v++)
            off += (size_t)snprintf(ranges + off, sizeof(ranges) - off, "%s%d-%d", v ? " | " : "",
                                    plan->first_layer[v], plan->last_layer[v]);
        tm_log(a, rank, "plan: %s, %d stages x %d chunks x %d replicas, schedule %s, M=%d B=%d T=%d, layers %s",
               cfg.name, P, V, D, sc->name, M, B, T, ranges);
        double mem_max = 0;
        for (int p = 0; p < P && plan->pred_rank_mem_bytes; p++)
            mem_max = plan->pred_rank_mem_bytes[p] > mem_max ? plan->pred_rank_mem_bytes[p] : mem_max;
        tm_log(a, rank, "predicted: step %.1f ms, bubble %.1f%%, %.0f tokens/s, MFU %.1f%%, memory %.1f MiB per rank",
               1e3 * plan->pred_step_time_s, 100 * sim.bubble_overall, plan->pred_tokens_per_s, 100 * plan->pred_mfu,
               mem_max / 1048576.0);
        int slow;
        double share, balance;
        if (pt_plan_single_layer_bound(plan, &slow, &share, &balance)) {
            int l = plan->first_layer[slow];
            char what[96];
            pt_model_layer_describe(&cfg, l, what, sizeof what);
            tm_log(a, rank,
                   "note: chunk %d is one layer, %s, with %.0f%% of the work: no split into %d chunks balances them "
                   "better than %.0f%%%s",
                   slow, what, 100.0 * share, plan->n_vstages, 100.0 * balance,
                   l == pt_model_n_layers(&cfg) - 1 && pt_model_head_layers(&cfg) == 1
                       ? "; --head-split auto lets the plan cut the LM head into layers"
                       : "");
        }
        pt_sim_result_free(&sim);
    }

    /* This rank. */
    PT_TRY(pt_backend_get(tc->backend ? tc->backend : "cpu", &be), out);
    int device = 0;
    PT_TRY(tm_device(be, pt_comm_local_rank(comm), &device), out);
    PT_TRY(be->stream_create(&(pt_stream_opts){ .device = device, .n_threads = tc->threads }, &stream), out);
    PT_TRY(pt_profile_create(rank, pt_comm_clock_offset_ns(comm), &prof), out);
    pt_adamw_cfg ac = { .lr = (float)tc->lr, .beta1 = (float)tc->beta1, .beta2 = (float)tc->beta2,
                        .eps = (float)tc->eps, .weight_decay = (float)tc->weight_decay,
                        .grad_clip = (float)tc->grad_clip };
    pt_runtime_opts ro = { .cfg = &cfg, .plan = plan, .sched = sc, .comm = comm, .be = be, .stream = stream,
                           .adamw = ac, .seed = tc->seed, .timeout_ms = a->timeout_ms,
                           .mem_limit_bytes = a->mem_limit_bytes, .profile = prof };
    PT_TRY(pt_runtime_create(&ro, &rt), out);
    tm_log(a, rank, "rank 0: %.1f MiB allocated (%.1f MiB activation slots)",
           (double)pt_runtime_peak_bytes(rt) / 1048576.0, (double)pt_runtime_slot_bytes(rt) / 1048576.0);
    tm_log(a, rank, "transfers: %s", pt_runtime_transfer_path(rt));
    if (tc->init_from) { /* Hugging Face weights: each chunk reads its own tensors (as the one-process trainer) */
        pt_model *im[256];
        pt_optim *io[256];
        int n_im = tm_chunks(rt, im, io);
        for (int c = 0; c < n_im; c++)
            PT_TRY(pt_model_load_hf_safetensors(im[c], tc->init_from), out);
    }

    /* The run's description for checkpoints: plan and schedule name. */
    {
        cJSON *j = NULL;
        PT_TRY(pt_plan_to_json(plan, &j), out);
        /* the config as trained (the data's tokenizer may have widened the preset's vocabulary),
         * so sample, ckpt export and resume rebuild exactly this model */
        cJSON *mj = pt_model_config_to_json(&cfg);
        if (!mj) {
            cJSON_Delete(j);
            st = pt_fail(PT_ENOMEM, "out of host memory");
            goto out;
        }
        cJSON_AddItemToObject(j, "model", mj);
        cJSON_AddStringToObject(j, "schedule_name", sc->name);
        if (pt_dataset_describe(data, j) != PT_OK) {
            cJSON_Delete(j);
            st = pt_fail(PT_ENOMEM, "out of host memory");
            goto out;
        }
        run_json = cJSON_PrintUnformatted(j);
        /* the run folder's config.json: the same description (the plan holds stages, chunks,
         * replicas) with the settings, as a one-process run writes it (its keys are a superset) */
        if (run_json && rank == 0 && tc->run_dir) {
            char path[4096];
            snprintf(path, sizeof path, "%s/config.json", tc->run_dir);
            st = pt_mkdirs(tc->run_dir);
            if (st == PT_OK)
                st = pt_train_cfg_to_json(tc, j);
            if (st == PT_OK && !(cJSON_AddNumberToObject(j, "n_params", (double)pt_model_config_n_params(&cfg)) &&
                                 cJSON_AddStringToObject(j, "backend", be->name) &&
                                 cJSON_AddStringToObject(j, "data", pt_dataset_name(data))))
                st = pt_fail(PT_ENOMEM, "out of host memory");
            if (st == PT_OK)
                st = pt_json_write_file(path, j, 0);
        }
        cJSON_Delete(j);
        if (st != PT_OK)
            goto out;
        if (!run_json) {
            st = pt_fail(PT_ENOMEM, "out of host memory");
            goto out;
        }
    }
    int64_t first_step = 0;
    uint64_t run_seed = tc->seed;
    if (tc->ckpt_dir) {
        PT_TRY(pt_ckpt_saver_create(tc->ckpt_dir, 3, 1, 2, &saver), out);
        pt_model *models[256];
        pt_optim *optims[256];
        int V_ = tm_chunks(rt, models, optims);
        /* the staging buffer now, so the first save stalls no longer than later ones (replicas
         * other than 0 save nothing: tm_save) */
        PT_TRY(pt_ckpt_saver_reserve(saver, models, optims, pt_runtime_replica(rt) == 0 ? V_ : 0), out);
        if (tc->resume) {
            PT_TRY(pt_ckpt_check_data(tc->ckpt_dir, data), out);
            pt_ckpt_load_info li;
            memset(&li, 0, sizeof li);
            PT_TRY(pt_ckpt_load_ex(tc->ckpt_dir, models, optims, V_, &rs, NULL, NULL, &li), out);
            if (li.note[0])
                tm_log(a, rank, "%s", li.note);
            first_step = rs.step;
            /* the data order of the run being continued, whatever --seed says now (as the
             * one-process trainer does) */
            pt_dataset_set_seed(data, rs.seed);
            run_seed = rs.seed;
            tm_log(a, rank, "resumed from %s at step %lld", tc->ckpt_dir, (long long)first_step);
        }
    }

    tm_ctx t = { .a = a, .rt = rt, .data = data, .comm = comm, .prof = prof, .saver = saver, .run_json = run_json,
                 .first_step = first_step, .tokens_per_step = (int64_t)B * T * M * D, .rank = rank,
                 .seed = run_seed };
    pt_train_ops ops = { .ctx = &t, .step = tm_step, .eval = tc->eval_batches > 0 ? tm_eval : NULL,
                         .save = saver ? tm_save : NULL };
    if (a->on_start)
        PT_TRY(a->on_start(a->hook_ctx, rt, comm, data), out);
    pt_train_cfg lc = *tc;
    if (rank != 0) {
        lc.run_dir = NULL;
        lc.metrics_path = NULL;
    }
    PT_TRY(pt_train_loop(&lc, &ops, first_step, rank == 0 ? a->on_event : NULL, a->event_ctx, summary), out);
    if (saver)
        PT_TRY(pt_ckpt_saver_wait(saver), out); /* the last checkpoint is committed (every rank agrees) */

    if (prof) {
        pt_prof_event *all = NULL;
        size_t n = 0;
        double *peak = calloc((size_t)world, sizeof(double));
        if (!peak) {
            st = pt_fail(PT_ENOMEM, "out of host memory");
            goto out;
        }
        st = pt_profile_gather(prof, comm, pt_deadline_after_ms(pt_comm_timeout_ms(comm)), &all, &n, peak);
        if (st == PT_OK && rank == 0 && n > 0) {
            char title[256];
            snprintf(title, sizeof(title), "%s %s P=%d V=%d D=%d M=%d (measured)", cfg.name, sc->name, P, V, D, M);
            pt_profile_report_opts po = { .sched = sc, .plan = plan, .cfg = &cfg, .n_world = world,
                                          .peak_flops = dev.peak_flops * world, .peak_bytes = peak,
                                          .link_latency_s = dev.intra_latency_s,
                                          .link_bandwidth_Bps = dev.intra_bw_Bps, .title = title };
            pt_profile_summary sum;
            st = pt_profile_summarize(all, n, &po, &sum);
            if (st == PT_OK) {
                if (a->profile_dir)
                    st = pt_profile_write_dir(a->profile_dir, all, n, &po, &sum);
                tm_log(a, rank, "profile (%d steps): step %.1f ms, %.0f tokens/s, %.2f GFLOP/s, MFU %.1f%%",
                       sum.n_steps, 1e3 * sum.step_time_s, sum.tokens_per_s, sum.flops_per_s / 1e9, 100 * sum.mfu);
                tm_log(a, rank, "bubble: measured %.1f%%, predicted %.1f%% (simulator on the measured costs); "
                                "pipeline window %.1f ms measured, %.1f ms predicted",
                       100 * sum.bubble_overall, 100 * sum.pred_bubble_overall, 1e3 * sum.window_s,
                       1e3 * sum.pred_step_time_s);
                for (int r = 0; r < world; r++)
                    tm_log(a, rank, "  rank %d: bubble %.1f%% (predicted %.1f%%), comm wait %.2f ms/step, peak %.1f MiB",
                           r, 100 * sum.bubble[r], sum.has_prediction ? 100 * sum.pred_bubble[r % P] : 0.0,
                           1e3 * sum.comm_wait_s[r], sum.peak_bytes[r] / 1048576.0);
                if (st == PT_OK && a->profile_dir)
                    tm_log(a, rank, "profile written to %s (trace.json, timeline.svg, summary.json)", a->profile_dir);
                pt_profile_summary_free(&sum);
            }
        }
        free(all);
        free(peak);
        if (st != PT_OK)
            goto out;
    }
out:
    pt_ckpt_saver_destroy(saver);
    pt_runtime_destroy(rt);
    pt_profile_destroy(prof);
    if (be && stream)
        be->stream_destroy(stream);
    free((void *)rs.run_json);
    free(run_json);
    free(carr);
    pt_sched_destroy(sc);
    pt_plan_destroy(plan);
    pt_layer_times_destroy(measured);
    pt_dataset_close(data);
    pt_comm_destroy(comm);
    return st;
}
