/* pt_runtime_train_main and its phases (include/pipetrain/runtime.h, docs/pipeline.md): a whole
 * training run from inside one rank — job, data, plan, schedule, runtime, restore, loop, report —
 * each a function over one pt_train_job, so that `pipetrain train` (every layout, one process
 * included: a P = 1 schedule, no comm) and `pipetrain bench` set a run up the same way. */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipetrain/ckpt.h"
#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/modules.h"
#include "pipetrain/runtime.h"
#include "pipetrain/snapshot.h"
#include "pipetrain/timeutil.h"

/* Steps profiled for the end-of-run summary when no --profile directory was asked for. */
#define TM_SUMMARY_STEPS 20

/* The device this rank's stream opens on: on a device backend its local rank modulo the node's
 * GPUs, so ranks share GPUs when there are more local ranks than GPUs (two stages on one GPU);
 * otherwise the local rank (ignored by the CPU backend). */
static pt_status tm_device(const pt_backend *be, int local_rank, int *out)
{
    *out = local_rank;
    if (be->device_memory) {
        int n = 0;
        char why[256] = "";
        PT_CHECK(pt_modules_gpu_count(&n, why, sizeof why));
        if (n <= 0)
            return pt_fail(PT_ENOTSUP, "backend %s: no CUDA device on this node (%s); use --backend cpu", be->name,
                           why);
        *out = local_rank % n;
    }
    return PT_OK;
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

/* One line for the user, on rank 0 only (a->on_log). */
static void tm_log(const pt_train_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tm_log(const pt_train_job *j, const char *fmt, ...)
{
    if (j->rank != 0 || !j->a->on_log)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    j->a->on_log(j->a->log_ctx, line);
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; s && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ 0xff;
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

/* ---- job ---- */

pt_status pt_train_job_open(pt_train_job *j, const pt_runtime_train_args *a)
{
    memset(j, 0, sizeof(*j));
    j->ckpt_lock_fd = -1;
    j->a = a;
    j->world = 1;
    const pt_train_cfg *tc = &a->train;
    j->sched_name = a->schedule ? a->schedule : "1f1b";
    j->P = a->stages > 0 ? a->stages : 1;
    j->D = a->replicas > 0 ? a->replicas : 1;
    j->TP = a->tp > 1 ? a->tp : 1;
    j->SP = j->TP > 1 && a->sp;
    j->M = tc->micro_batches;
    j->B = tc->micro_batch_size;
    j->T = tc->seq_len;
    j->V = a->chunks;
    j->run_seed = tc->seed;
    if (!pt_sched_is_generator(j->sched_name)) {
        PT_CHECK(pt_sched_load(j->sched_name, &j->sched));
        j->P = j->sched->n_ranks;
        j->V = j->sched->n_chunks;
        j->M = j->sched->n_microbatches;
    }
    if (j->V <= 0)
        j->V = pt_sched_default_chunks(j->sched_name);
    if (tc->eval_batches > 0 && j->B > 0 && a->eval_batch_seqs > 0 && a->eval_batch_seqs % j->B != 0)
        return pt_fail(PT_EINVAL, "held-out eval batches of %d sequences cannot be cut into micro-batches of %d; make "
                                  "the eval batch a multiple of --micro-batch-size",
                       a->eval_batch_seqs, j->B);
    /* A job of one rank needs no comm (the runtime takes NULL for P x D = 1); a larger one joins
     * the other ranks. The hash makes ranks started with different settings refuse each other. */
    int in_job = 0, env_rank = 0, env_size = 1;
    PT_CHECK(pt_comm_env_job(&in_job, &env_rank, &env_size));
    if (a->check_only) /* checked before launching: the job as its ranks will see it */
        j->world = j->P * j->D * j->TP;
    else if (env_size > 1) {
        uint64_t h = 1469598103934665603ull;
        char num[160];
        snprintf(num, sizeof(num), "P%d D%d TP%d SP%d V%d M%d B%d T%d seed%llu steps%lld", j->P, j->D, j->TP, j->SP,
                 j->V, j->M, j->B, j->T, (unsigned long long)tc->seed, (long long)tc->steps);
        h = fnv1a(fnv1a(fnv1a(fnv1a(fnv1a(h, tc->model), j->sched_name), a->layout ? a->layout : a->partition), num),
                  tc->data ? tc->data : "builtin");
        pt_comm_opts co = { .provider = a->provider, .timeout_ms = a->timeout_ms, .config_hash = h };
        PT_CHECK(pt_comm_create(&co, &j->comm));
        j->rank = pt_comm_rank(j->comm);
        j->world = pt_comm_size(j->comm);
        j->local_rank = pt_comm_local_rank(j->comm);
    }
    const int want = j->P * j->D * j->TP;
    if (j->world != want) {
        char tp[48] = "";
        if (j->TP > 1)
            snprintf(tp, sizeof tp, " x %d tensor-parallel ranks", j->TP);
        return pt_fail(PT_EINVAL, "%d stages x %d replicas%s need %d ranks but the job has %d; use --nproc %d", j->P,
                       j->D, tp, want, j->world, want);
    }
    /* a tensor-parallel group (T consecutive world ranks) talks on every layer: inside one node */
    const char *lws = getenv("LOCAL_WORLD_SIZE");
    int L = lws && atoi(lws) > 0 ? atoi(lws) : j->world;
    if (j->TP > 1 && L % j->TP != 0)
        return pt_fail(PT_EINVAL, "--tp %d spans nodes: each node runs %d ranks, and a tensor-parallel group of %d "
                                  "consecutive ranks must sit in one node (it communicates on every layer); start a "
                                  "multiple of %d ranks per node, or use a --tp dividing %d",
                       j->TP, L, j->TP, j->TP, L);
    return PT_OK;
}

/* ---- data ---- */

pt_status pt_train_job_data(pt_train_job *j)
{
    const pt_runtime_train_args *a = j->a;
    const pt_train_cfg *tc = &a->train;
    if (a->model_config) /* a resumed run's, from its checkpoint */
        j->cfg = *a->model_config;
    else
        PT_CHECK(pt_model_config_load(tc->model, &j->cfg));
    /* auto: decided with the plan */
    PT_CHECK(pt_model_config_set_head_split(&j->cfg, tc->head_split));
    PT_CHECK(pt_train_cfg_check(tc, &j->cfg));
    PT_CHECK(pt_dataset_open(tc->data, tc->seed, &j->data));
    char note[512];
    pt_dataset_fit_model(j->data, &j->cfg, note, sizeof note); /* the data's tokenizer sets the vocabulary */
    char threads[48], layout[48] = "";
    if (tc->threads > 0)
        snprintf(threads, sizeof threads, "%d thread%s%s", tc->threads, tc->threads == 1 ? "" : "s",
                 j->world > 1 ? " per rank" : "");
    else
        snprintf(threads, sizeof threads, "all cores");
    if (j->D > 1)
        snprintf(layout, sizeof layout, "%d replicas x ", j->D);
    if (j->TP > 1)
        PT_CHECK(pt_model_tp_check(&j->cfg, j->TP, j->SP, j->B, j->T));
    tm_log(j, "training %s (%.2fM parameters) on %s: %lld steps of %s%d x %d x %d tokens%s, %s, run dir %s",
           j->cfg.name[0] ? j->cfg.name : tc->model, (double)pt_model_config_n_params(&j->cfg) / 1e6,
           pt_dataset_name(j->data), (long long)tc->steps, layout, j->M, j->B, j->T,
           pt_train_cfg_precision(tc) != PT_PRECISION_BF16 ? ""
           : a->no_stash ? " in bf16 mixed precision (what backward reads kept as floats: --bf16-stash 0)"
                         : " in bf16 mixed precision (what backward reads kept in 2 bytes)",
           threads,
           tc->run_dir ? tc->run_dir : "(none)");
    if (note[0])
        tm_log(j, "%s", note);
    return pt_dataset_set_batch(j->data, j->D * j->M * j->B,
                                tc->eval_batches > 0 ? (a->eval_batch_seqs > 0 ? a->eval_batch_seqs : j->B) : 0,
                                j->T);
}

/* ---- plan ---- */

/* --head-chunk, once the head split is known: the rows the head runs at a time (j->cfg.head_chunk,
 * which the planner prices and the models follow), said once when it chunks. */
static void head_chunk_resolve(pt_train_job *j)
{
    const int N = j->B * j->T;
    j->cfg.head_chunk = pt_head_chunk_resolve(j->a->train.head_chunk, &j->cfg, j->TP,
                                              j->P * j->V > 1 && pt_sched_forwards_first(j->sched_name));
    if (j->cfg.head_chunk > 0 && j->cfg.head_chunk < N) {
        const int R = j->cfg.head_chunk < N ? j->cfg.head_chunk : N;
        const double row = (double)j->cfg.vocab_padded * sizeof(float);
        const int mib = row * N >= 1024.0 * 1024.0;
        const double unit = mib ? 1024.0 * 1024.0 : 1024.0;
        tm_log(j, "LM head in chunks of %d of the %d token rows: %.1f %s of logits at a time instead of %.1f %s a "
                  "micro-batch (--head-chunk)",
               R, N, row * R / unit, mib ? "MiB" : "KiB", row * N / unit, mib ? "MiB" : "KiB");
    }
}

pt_status pt_train_job_plan(pt_train_job *j)
{
    const pt_runtime_train_args *a = j->a;
    const pt_train_cfg *tc = &a->train;
    PT_CHECK(pt_device_load("cpu", &j->dev));
    /* --precision bf16: the bf16 weight copy, messages and activation stash, as models/ and comm/
     * make them */
    pt_device_set_precision(&j->dev, pt_train_cfg_precision(tc) == PT_PRECISION_BF16, !a->no_stash);
    /* The cpu device is one core; a rank computes on as many as it has threads. */
    j->dev.peak_flops *= tc->threads > 0 ? tc->threads : (double)sysconf(_SC_NPROCESSORS_ONLN);
    PT_CHECK(pt_topology_init(&j->topo, &j->dev, 1, j->world));
    if (a->layer_costs)
        PT_CHECK(pt_layer_times_load(a->layer_costs, &j->measured));
    const char *price_sched = pt_sched_is_generator(j->sched_name) ? j->sched_name : j->V > 1 ? "interleaved" : "1f1b";
    int auto_head = tc->head_split == PT_HEAD_SPLIT_AUTO;
    if (auto_head && a->layout)
        return pt_fail(PT_EINVAL, "--head-split auto chooses the layers, which --layout names; give --head-split K "
                                  "with --layout");
    if (auto_head && j->P * j->V == 1) /* one chunk holds the whole head: nothing to choose (the config's) */
        auto_head = 0;
    else if (auto_head && j->measured) /* a cost file was measured with its own split */
        PT_CHECK(pt_model_config_set_head_split(&j->cfg,
                                                j->measured->cfg.head_split > 1 ? j->measured->cfg.head_split : 1));
    if (a->layout) {
        head_chunk_resolve(j);
        PT_CHECK(pt_plan_from_layout(&j->cfg, a->layout, j->V, &j->plan));
        if (j->plan->n_stages != j->P)
            return pt_fail(PT_EINVAL, "--layout has %d chunks, which is %d stages of %d chunks, but %d stages were asked",
                           j->plan->n_vstages, j->plan->n_stages, j->V, j->P);
        j->plan->n_replicas = j->D;
        j->plan->n_tp = j->TP;
        j->plan->sp = j->SP;
        j->plan->zero = a->zero;
        j->plan->micro_batch_size = j->B;
        j->plan->n_microbatches = j->M;
        j->plan->seq_len = j->T;
        snprintf(j->plan->schedule, sizeof(j->plan->schedule), "%s", price_sched);
        return pt_plan_price(j->plan, &j->cfg, &j->dev, &j->topo, j->measured);
    }
    pt_plan_request rq;
    pt_plan_request_init(&rq);
    rq.method = a->partition ? a->partition : "time";
    rq.n_devices = j->world;
    rq.n_stages = j->P;
    rq.n_replicas = j->D;
    rq.n_tp = j->TP;
    rq.sp = j->SP;
    rq.n_chunks = j->V;
    rq.schedule = price_sched;
    rq.micro_batch_size = j->B;
    rq.n_microbatches = j->M;
    rq.seq_len = j->T;
    rq.recompute = 0;
    rq.zero = a->zero;
    rq.mem_cap_bytes = (double)a->mem_limit_bytes;
    if (auto_head && !j->measured) {
        int k = 1;
        double t_k = 0, t_1 = 0;
        PT_CHECK(pt_plan_best_head_split(&j->cfg, &j->dev, &j->topo, &rq, &k, &t_k, &t_1));
        PT_CHECK(pt_model_config_set_head_split(&j->cfg, k));
        tm_log(j, "head split: auto chose %d LM-head layer%s (predicted step %.1f ms; %.1f ms with one)", k,
               k == 1 ? "" : "s", 1e3 * t_k, 1e3 * t_1);
    }
    head_chunk_resolve(j);
    PT_CHECK(pt_plan_make(&j->cfg, &j->dev, &j->topo, j->measured, &rq, &j->plan));
    j->plan->zero = a->zero;
    return PT_OK;
}

/* ---- schedule ---- */

/* The plan and the simulator's prediction of it, for the user. */
static void log_prediction(const pt_train_job *j, const pt_sim_result *sim)
{
    const pt_plan *plan = j->plan;
    char ranges[512];
    size_t off = 0;
    for (int v = 0; v < plan->n_vstages && off < sizeof(ranges) - 16; v++)
        off += (size_t)snprintf(ranges + off, sizeof(ranges) - off, "%s%d-%d", v ? " | " : "", plan->first_layer[v],
                                plan->last_layer[v]);
    char tp[64] = "";
    if (j->TP > 1)
        snprintf(tp, sizeof tp, " x %d tensor-parallel%s", j->TP, j->SP ? " (sequence-parallel)" : "");
    tm_log(j, "plan: %s, %d stages x %d chunks x %d replicas%s%s, schedule %s, M=%d B=%d T=%d, layers %s", j->cfg.name,
           j->P, j->V, j->D, tp, plan->zero && j->D > 1 ? " (ZeRO-1: each holds 1/D of the AdamW moments)" : "",
           j->sched->name, j->M, j->B, j->T, ranges);
    if (plan->zero && j->D == 1)
        tm_log(j, "--zero 1 with one replica (--dp 1): nothing to shard; each rank keeps its stage's whole "
                  "optimizer state");
    double mem_max = 0;
    for (int p = 0; p < j->P && plan->pred_rank_mem_bytes; p++)
        mem_max = plan->pred_rank_mem_bytes[p] > mem_max ? plan->pred_rank_mem_bytes[p] : mem_max;
    tm_log(j, "predicted: step %.1f ms, bubble %.1f%%, %.0f tokens/s, MFU %.1f%%, memory %.1f MiB per rank",
           1e3 * plan->pred_step_time_s, 100 * sim->bubble_overall, plan->pred_tokens_per_s, 100 * plan->pred_mfu,
           mem_max / 1048576.0);
    int slow;
    double share, balance;
    if (pt_plan_single_layer_bound(plan, &slow, &share, &balance)) {
        int l = plan->first_layer[slow];
        char what[96];
        pt_model_layer_describe(&j->cfg, l, what, sizeof what);
        tm_log(j,
               "note: chunk %d is one layer, %s, with %.0f%% of the work: no split into %d chunks balances them "
               "better than %.0f%%%s",
               slow, what, 100.0 * share, plan->n_vstages, 100.0 * balance,
               l == pt_model_n_layers(&j->cfg) - 1 && pt_model_head_layers(&j->cfg) == 1
                   ? "; --head-split auto lets the plan cut the LM head into layers"
                   : "");
    }
}

pt_status pt_train_job_schedule(pt_train_job *j)
{
    j->cost_arr = calloc((size_t)j->plan->n_vstages * 6, sizeof(double));
    if (!j->cost_arr)
        return pt_fail(PT_ENOMEM, "out of host memory");
    PT_CHECK(plan_costs(&j->cfg, j->plan, &j->dev, j->measured, &j->costs, j->cost_arr));
    /* zero-bubble generators place work by the plan's per-stage costs */
    if (!j->sched)
        PT_CHECK(pt_sched_generate(j->sched_name, j->P, j->V, j->M, &j->costs, &j->sched));
    pt_sim_result sim = { 0 };
    PT_CHECK(pt_sched_simulate(j->sched, &j->costs, &sim));
    log_prediction(j, &sim);
    pt_sim_result_free(&sim);
    return PT_OK;
}

/* ---- runtime ---- */

/* The run's description, for checkpoints (plan, model as trained, schedule, data) and, with the
 * settings, for the run folder's config.json (rank 0). */
static pt_status write_run_json(pt_train_job *j)
{
    const pt_train_cfg *tc = &j->a->train;
    cJSON *o = NULL;
    PT_CHECK(pt_plan_to_json(j->plan, &o));
    /* the config as trained (the data's tokenizer may have widened the preset's vocabulary), so
     * sample, ckpt export and resume rebuild exactly this model */
    cJSON *mj = pt_model_config_to_json(&j->cfg);
    if (!mj) {
        cJSON_Delete(o);
        return pt_fail(PT_ENOMEM, "out of host memory");
    }
    cJSON_AddItemToObject(o, "model", mj);
    /* the settings too (steps and the learning-rate schedule, what --data was), which `train
     * --resume` takes from the checkpoint and refuses to change without --reset-schedule */
    pt_status st = pt_train_cfg_to_json(tc, o);
    if (st == PT_OK && tc->data && !cJSON_AddStringToObject(o, "data_source", tc->data))
        st = pt_fail(PT_ENOMEM, "out of host memory");
    if (st == PT_OK && (!cJSON_AddStringToObject(o, "schedule_name", j->sched->name) ||
                        pt_dataset_describe(j->data, o) != PT_OK || !(j->run_json = cJSON_PrintUnformatted(o))))
        st = pt_fail(PT_ENOMEM, "out of host memory");
    if (st == PT_OK && j->rank == 0 && tc->run_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", tc->run_dir);
        st = pt_mkdirs(tc->run_dir);
        if (st == PT_OK)
            st = pt_train_cfg_to_json(tc, o);
        if (st == PT_OK && !(cJSON_AddNumberToObject(o, "n_params", (double)pt_model_config_n_params(&j->cfg)) &&
                             cJSON_AddStringToObject(o, "backend", j->be->name) &&
                             cJSON_AddStringToObject(o, "data", pt_dataset_name(j->data))))
            st = pt_fail(PT_ENOMEM, "out of host memory");
        if (st == PT_OK)
            st = pt_json_write_file(path, o, 0);
    }
    cJSON_Delete(o);
    return st;
}

pt_status pt_train_job_runtime(pt_train_job *j)
{
    const pt_runtime_train_args *a = j->a;
    const pt_train_cfg *tc = &a->train;
    PT_CHECK(pt_backend_get(tc->backend ? tc->backend : "cpu", &j->be));
    int device = 0;
    PT_CHECK(tm_device(j->be, j->local_rank, &device));
    /* --precision fp32 on CUDA: fp32 matrix products too, unless PT_CUDA_MATMUL says otherwise */
    PT_CHECK(j->be->stream_create(&(pt_stream_opts){ .device = device, .n_threads = tc->threads,
                                                     .fp32_products = pt_train_cfg_precision(tc) == PT_PRECISION_FP32 },
                                  &j->stream));
    /* a pipeline always reports its measured bubble; one process only when asked (--profile) */
    if (j->world > 1 || a->profile_dir || a->profile)
        PT_CHECK(pt_profile_create(j->rank, j->comm ? pt_comm_clock_offset_ns(j->comm) : 0, &j->prof));
    pt_adamw_cfg ac = { .lr = (float)tc->lr, .beta1 = (float)tc->beta1, .beta2 = (float)tc->beta2,
                        .eps = (float)tc->eps, .weight_decay = (float)tc->weight_decay,
                        .grad_clip = (float)tc->grad_clip };
    pt_runtime_opts ro = { .cfg = &j->cfg, .plan = j->plan, .sched = j->sched, .comm = j->comm, .be = j->be,
                           .stream = j->stream, .adamw = ac, .seed = tc->seed, .timeout_ms = a->timeout_ms,
                           .mem_limit_bytes = a->mem_limit_bytes, .profile = j->prof, .overlap = a->overlap,
                           .precision = pt_train_cfg_precision(tc), .no_stash = a->no_stash };
    PT_CHECK(pt_runtime_create(&ro, &j->rt));
    tm_log(j, "rank 0: %.1f MiB allocated (%.1f MiB activation slots)",
           (double)pt_runtime_peak_bytes(j->rt) / 1048576.0, (double)pt_runtime_slot_bytes(j->rt) / 1048576.0);
    if (j->world > 1)
        tm_log(j, "transfers: %s", pt_runtime_transfer_path(j->rt));
    if (tc->init_from) { /* Hugging Face weights: each chunk reads its own tensors */
        pt_model *im[256];
        pt_optim *io[256];
        int n_im = tm_chunks(j->rt, im, io);
        for (int c = 0; c < n_im; c++)
            PT_CHECK(pt_model_load_hf_safetensors(im[c], tc->init_from));
    }
    return write_run_json(j);
}

/* ---- restore ---- */

/* How many of this rank's V chunks a checkpoint save passes (with optim_only on replicas other than
 * 0). Without ZeRO the data-parallel replicas hold the same tensors: replica 0 saves them, the
 * others nothing (loading goes by tensor name, so every replica reads replica 0's). With --zero 1
 * and D > 1 each replica's optimizers hold only its slice of the moments (the runtime made them
 * with pt_optim_create_range), so every replica saves its slices as pieces, and replica 0 also the
 * weights; loading assembles any replica's range from them, for any D, P or --zero. */
static int tm_saved_chunks(const pt_train_job *j, int V)
{
    if (j->plan && j->plan->zero && j->D > 1)
        return V;
    return pt_runtime_replica(j->rt) == 0 ? V : 0;
}

/* Every rank resumes from ONE step: the newest every rank could load. A rank whose part of the
 * newest checkpoint is damaged falls back to an older one on its own (pt_ckpt_load_ex), so the
 * ranks say which step each loaded (a sum over the world, each at its own index); the ones ahead
 * reload the oldest of them, and a second round says whether everyone could. A rank that loaded
 * nothing fails every rank, named. `loaded` is this rank's pt_ckpt_load_ex result. */
static pt_status tm_agree_restore(pt_train_job *j, pt_status loaded, const pt_ckpt_load_info *li,
                                  pt_model *const *models, pt_optim *const *optims, int V, pt_train_state *rs)
{
    const char *root = j->a->train.ckpt_dir;
    double *v = calloc((size_t)j->world, sizeof(double));
    if (!v)
        return pt_fail(PT_ENOMEM, "out of host memory");
    char err[512] = "";
    if (loaded != PT_OK)
        snprintf(err, sizeof err, "%s", pt_last_error());
    v[j->rank] = loaded == PT_OK ? (double)rs->step + 1 : 0;
    pt_status st = pt_comm_allreduce_f64(j->comm, NULL, v, (size_t)j->world, pt_deadline_after_ms(pt_comm_timeout_ms(j->comm)));
    int bad = -1, lo = -1, differ = 0;
    for (int r = 0; st == PT_OK && r < j->world; r++) {
        differ |= v[r] != v[0];
        if (v[r] == 0 && bad < 0)
            bad = r;
        if (v[r] > 0 && (lo < 0 || v[r] < v[lo]))
            lo = r;
    }
    int64_t agreed = lo >= 0 ? (int64_t)v[lo] - 1 : -1;
    int64_t mine = (int64_t)v[j->rank] - 1;
    free(v);
    if (st != PT_OK)
        return pt_fail_wrap(st, "rank %d: agreeing on the checkpoint to resume from failed", j->rank);
    if (bad >= 0)
        return loaded != PT_OK ? pt_fail_wrap(loaded, "rank %d: %s", j->rank, err)
                               : pt_fail(PT_EFORMAT, "rank %d could load no checkpoint under %s (its error says why); "
                                                     "nothing was resumed",
                                         bad, root);
    if (mine != agreed) {
        /* this rank's note names what it found damaged, if it fell back itself */
        fprintf(stderr, "rank %d: loaded step %lld, but rank %d could only load step %lld%s%s; resuming from that "
                        "step on every rank\n",
                j->rank, (long long)mine, lo, (long long)agreed, li->note[0] ? ": " : "", li->note);
        char dir[4096];
        char sn[64];
        pt_ckpt_step_name(agreed, sn, sizeof sn);
        snprintf(dir, sizeof dir, "%s/%s", root, sn);
        pt_ckpt_load_info li2;
        memset(&li2, 0, sizeof li2);
        pt_train_state rs2 = { 0 };
        loaded = pt_ckpt_load_ex(dir, models, optims, V, &rs2, NULL, NULL, &li2);
        free((void *)rs2.run_json);
        if (loaded == PT_OK)
            *rs = rs2;
        else
            snprintf(err, sizeof err, "%s", pt_last_error());
    } else if (li->note[0] && j->rank != 0) { /* rank 0's is logged with the resume line */
        fprintf(stderr, "rank %d: %s\n", j->rank, li->note);
    }
    double ok = loaded == PT_OK ? 0 : 1;
    st = pt_comm_allreduce_f64(j->comm, NULL, &ok, 1, pt_deadline_after_ms(pt_comm_timeout_ms(j->comm)));
    if (st != PT_OK)
        return pt_fail_wrap(st, "rank %d: agreeing on the checkpoint to resume from failed", j->rank);
    if (loaded != PT_OK)
        return pt_fail_wrap(loaded, "rank %d: %s", j->rank, err);
    if (ok > 0)
        return pt_fail(PT_EFORMAT, "%.0f rank(s) could not load step %lld of %s, the newest step every rank "
                                   "could load before (their errors say why); nothing was resumed",
                       ok, (long long)agreed, root);
    if (differ && j->rank == 0)
        tm_log(j, "the ranks' newest loadable checkpoints differed (rank %d could only load step %lld): every rank "
                  "resumes from step %lld", lo, (long long)agreed, (long long)agreed);
    return PT_OK;
}

/* The node's snapshot store of this job: --snapshot-dir, or /dev/shm/pipetrain-UID/<hash of the
 * checkpoint root's real path>; then a directory per layout (the world, the ranks per node and the
 * plan's stages, replicas, chunks and ZeRO setting), so that a job restarted with another layout
 * (after an elastic shrink) never takes a snapshot of the old one. */
static pt_status tm_snapshot_dir(pt_train_job *j, int L)
{
    const pt_train_cfg *tc = &j->a->train;
    char base[900];
    if (tc->snapshot_dir) {
        if (strlen(tc->snapshot_dir) >= sizeof base)
            return pt_fail(PT_EINVAL, "--snapshot-dir is too long (%zu characters)", strlen(tc->snapshot_dir));
        snprintf(base, sizeof base, "%s", tc->snapshot_dir);
    } else {
        struct stat sb;
        if (stat("/dev/shm", &sb) != 0 || !S_ISDIR(sb.st_mode))
            return pt_fail(PT_EINVAL, "--snapshot-every: this machine has no /dev/shm; give --snapshot-dir DIR on a "
                                      "memory file system (tmpfs)");
        char real[4096];
        const char *root = realpath(tc->ckpt_dir, real) ? real : tc->ckpt_dir;
        snprintf(base, sizeof base, "/dev/shm/pipetrain-%u/%016llx", (unsigned)getuid(),
                 (unsigned long long)fnv1a(1469598103934665603ull, root));
    }
    uint64_t h = 1469598103934665603ull;
    char lay[256];
    snprintf(lay, sizeof lay, "w%d l%d p%d d%d t%d s%d v%d z%d", j->world, L, j->P, j->D, j->TP, j->SP, j->V,
             j->plan ? j->plan->zero : 0);
    h = fnv1a(h, lay);
    for (int v = 0; j->plan && v < j->plan->n_vstages; v++) {
        char one[64];
        snprintf(one, sizeof one, "%d:%d-%d ", v, j->plan->first_layer[v], j->plan->last_layer[v]);
        h = fnv1a(h, one);
    }
    snprintf(j->snap_dir, sizeof j->snap_dir, "%s/layout-%016llx", base, (unsigned long long)h);
    return PT_OK;
}

/* Back to the state of a run from step 0: the weights as pt_runtime_create initialised them (they
 * depend only on the seed and the tensor names), zero moments, no optimizer step. */
static pt_status tm_reinit(pt_train_job *j, pt_model *const *models, pt_optim *const *optims, int V)
{
    const pt_train_cfg *tc = &j->a->train;
    if (tc->init_from)
        return pt_fail(PT_EFORMAT, "rank %d: a snapshot restore failed after loading part of this rank's state, and "
                                   "there is no checkpoint to fall back on; start the run again (--init-from %s)",
                       j->rank, tc->init_from);
    for (int c = 0; c < V; c++) {
        PT_CHECK(pt_model_init_weights(models[c], tc->seed));
        size_t lo, hi;
        pt_optim_range(optims[c], &lo, &hi);
        PT_CHECK(j->be->memset_zero(j->stream, pt_optim_m(optims[c]), (hi - lo) * sizeof(float)));
        PT_CHECK(j->be->memset_zero(j->stream, pt_optim_v(optims[c]), (hi - lo) * sizeof(float)));
        pt_optim_set_steps_done(optims[c], 0);
    }
    return PT_OK;
}

/* Opens the snapshot store (collective: the buddy communicator) and reserves its staging buffer. */
static pt_status tm_snapshot_open(pt_train_job *j, pt_model *const *models, pt_optim *const *optims, int V)
{
    const char *lws = getenv("LOCAL_WORLD_SIZE");
    int L = lws && atoi(lws) > 0 ? atoi(lws) : j->world;
    PT_CHECK(tm_snapshot_dir(j, L));
    if (j->local_rank == 0) /* a store of another layout (before a shrink) is never loaded again */
        PT_CHECK(pt_snapshot_remove_others(j->snap_dir));
    pt_snapshot_opts o = { .dir = j->snap_dir, .rank = j->rank, .world = j->world, .ranks_per_node = L };
    PT_CHECK(pt_snapshot_open(&o, j->world > 1 ? j->comm : NULL, &j->snap));
    return pt_snapshot_reserve(j->snap, models, optims, V);
}

pt_status pt_train_job_restore(pt_train_job *j)
{
    const pt_train_cfg *tc = &j->a->train;
    if (!tc->ckpt_dir)
        return PT_OK;
    /* one job per checkpoint root: its rank 0 holds the root's lock until it ends */
    if (!j->comm || pt_comm_rank(j->comm) == 0)
        PT_CHECK(pt_ckpt_lock(tc->ckpt_dir, &j->ckpt_lock_fd));
    PT_CHECK(pt_ckpt_saver_create(tc->ckpt_dir, 3, 1, 2, &j->saver));
    pt_model *models[256];
    pt_optim *optims[256];
    int V = tm_chunks(j->rt, models, optims);
    /* the staging buffer now, so the first save stalls no longer than later ones (what tm_save
     * saves: replica 0 everything; the others nothing, or under ZeRO-1 their moment slices) */
    pt_ckpt_save_opts so = { .optim_only = pt_runtime_replica(j->rt) > 0 };
    PT_CHECK(pt_ckpt_saver_reserve_ex(j->saver, models, optims, tm_saved_chunks(j, V), &so));
    if (tc->snapshot_every > 0)
        PT_CHECK(tm_snapshot_open(j, models, optims, V));
    /* an automatic restart with snapshots looks for them even before the first disk checkpoint */
    if (!tc->resume && !(j->snap && tc->restart_count > 0)) {
        if (j->snap) /* a run from the start: no snapshot of another past may be found later */
            PT_CHECK(pt_snapshot_discard(j->snap));
        return PT_OK;
    }
    PT_CHECK(pt_ckpt_check_data(tc->ckpt_dir, j->data));
    pt_ckpt_load_info li;
    memset(&li, 0, sizeof li);
    pt_train_state rs = { 0 };
    j->restore_begin_ns = pt_wall_ns();
    int64_t disk_step = pt_ckpt_resume_step(tc->ckpt_dir);
    if (j->snap) {
        pt_snapshot_restore_info si;
        PT_CHECK(pt_snapshot_restore(j->snap, j->world > 1 ? j->comm : NULL, disk_step, models, optims, V, &rs, &si));
        if (si.source != PT_SNAPSHOT_NONE) {
            free((void *)rs.run_json);
            j->restore_end_ns = pt_wall_ns();
            j->first_step = rs.step;
            pt_dataset_set_seed(j->data, rs.seed);
            j->run_seed = rs.seed;
            j->restore_source = si.source == PT_SNAPSHOT_BUDDY ? "buddy" : "memory";
            char disk[64] = "no disk checkpoint yet";
            if (disk_step >= 0)
                snprintf(disk, sizeof disk, "the disk checkpoint has step %lld", (long long)disk_step);
            tm_log(j, "resuming after step %lld from the in-memory snapshots in %s (%s)%s%s", (long long)j->first_step,
                   j->snap_dir, disk, si.note[0] ? "; " : "", si.note);
            return PT_OK;
        }
        if (si.note[0])
            tm_log(j, "%s", si.note);
        PT_CHECK(pt_snapshot_discard(j->snap));
        if (disk_step < 0 && !tc->resume) {
            if (si.touched) /* a snapshot load that failed on another rank left tensors here */
                PT_CHECK(tm_reinit(j, models, optims, V));
            tm_log(j, "no checkpoint and no snapshot to resume from: starting from step 0");
            j->restore_begin_ns = 0;
            return PT_OK;
        }
    }
    j->restore_source = "disk";
    pt_status st = pt_ckpt_load_ex(tc->ckpt_dir, models, optims, V, &rs, NULL, NULL, &li);
    free((void *)rs.run_json);
    rs.run_json = NULL;
    if (j->comm && j->world > 1)
        st = tm_agree_restore(j, st, &li, models, optims, V, &rs);
    PT_CHECK(st);
    j->restore_end_ns = pt_wall_ns();
    j->first_step = rs.step;
    /* the data order of the run being continued, whatever --seed says now */
    pt_dataset_set_seed(j->data, rs.seed);
    j->run_seed = rs.seed;
    tm_log(j, "resuming after step %lld from %s", (long long)j->first_step, tc->ckpt_dir);
    if (li.note[0])
        tm_log(j, "%s", li.note);
    return PT_OK;
}

/* ---- loop: the runtime as pt_train_loop's step ---- */

static pt_status tm_step(void *ctx, int64_t step, double lr, pt_step_stats *out)
{
    pt_train_job *j = ctx;
    /* Profile every step after the first of this run (the first warms caches and the transport);
     * without --profile only the next TM_SUMMARY_STEPS, for the summary printed at the end. */
    if (j->prof)
        pt_profile_set_enabled(j->prof, step > j->first_step &&
                                            (j->a->profile_dir || step <= j->first_step + TM_SUMMARY_STEPS));
    pt_runtime_step_info si;
    PT_CHECK(pt_runtime_step(j->rt, j->data, step, (float)lr, &si));
    memset(out, 0, sizeof(*out));
    out->loss = si.loss;
    out->grad_norm = si.grad_norm;
    out->lr = (float)lr;
    out->clip_scale = si.clip_scale;
    out->applied = si.applied;
    out->n_tokens = (int64_t)j->B * j->T * j->M * j->D;
    out->n_targets = si.n_tokens;
    out->fwd_s = si.fwd_s;
    out->bwd_s = si.bwd_s;
    out->optim_s = si.optim_s;
    out->exposed_comm_s = si.exposed_comm_s;
    out->comm_wait_s = si.comm_wait_s;
    out->tp_comm_s = si.tp_comm_s;
    const pt_train_cfg *tc = &j->a->train;
    if (j->snap && (step + 1) % tc->snapshot_every == 0 && step + 1 < tc->steps) {
        pt_model *models[256];
        pt_optim *optims[256];
        int V = tm_chunks(j->rt, models, optims);
        pt_train_state ts = { .step = step + 1, .data_step = step + 1, .seed = j->run_seed, .run_json = j->run_json };
        PT_CHECK(pt_snapshot_take(j->snap, models, optims, V, &ts));
        pt_snapshot_info si;
        pt_snapshot_get_info(j->snap, &si);
        out->snapshot_s = si.stage_s;
        out->snapshot_wait_s = si.waited_s;
        out->snapshot_write_s = si.write_s;
        out->snapshot_copy_s = si.buddy_s;
        if (si.waited_s > 0.25 * si.stage_s && si.waited_s > 0.05 && !j->snap_warned) {
            j->snap_warned = 1;
            tm_log(j, "the snapshot of step %lld first waited %.2f s for the previous one to be written and copied "
                      "(%.2f s + %.2f s): training stalled; a larger --snapshot-every avoids it",
                   (long long)(step + 1), si.waited_s, si.write_s, si.buddy_s);
        }
    }
    if (j->a->after_step) /* after the step's own times */
        PT_CHECK(j->a->after_step(j->a->hook_ctx, step + 1));
    return PT_OK;
}

/* The held-out eval through the pipeline: the same batches and numbers as the reference
 * one-process trainer (tests/common/ref_trainer.h) scores. */
static pt_status tm_eval(void *ctx, pt_eval_stats *out)
{
    pt_train_job *j = ctx;
    return pt_runtime_eval(j->rt, j->data, j->a->train.eval_batches, j->a->eval_batch_seqs, out);
}

static pt_status tm_save(void *ctx, int64_t steps_done, int64_t *committed, const char **path)
{
    pt_train_job *j = ctx;
    const pt_train_cfg *tc = &j->a->train;
    pt_model *models[256];
    pt_optim *optims[256];
    int V = tm_chunks(j->rt, models, optims);
    pt_train_state ts = { .step = steps_done, .data_step = steps_done, .seed = j->run_seed, .run_json = j->run_json };
    /* Returns once the tensors are staged; the writer compresses and commits in the background
     * while training goes on (the next save, or the end of the run, waits for it). Replica 0
     * writes the weights and moments; the other replicas write empty shards, or with --zero 1
     * their moment slices (tm_saved_chunks). */
    pt_ckpt_save_opts so = { .optim_only = pt_runtime_replica(j->rt) > 0 };
    pt_ckpt_save_info prev, si;
    pt_ckpt_saver_info(j->saver, &prev);
    /* it first waits for the previous save and fails if that one did: returning, that one is durable */
    PT_CHECK(pt_ckpt_save_ex(j->saver, j->comm, models, optims, tm_saved_chunks(j, V), &ts, &so));
    pt_ckpt_saver_info(j->saver, &si);
    int64_t c = prev.step;
    /* the last one of a run (finished or stopped) is durable before the run reports it */
    if (steps_done == tc->steps || j->stopping) {
        PT_CHECK(pt_ckpt_saver_wait(j->saver));
        c = steps_done;
    }
    *committed = c;
    *path = NULL;
    if (c < 0)
        return PT_OK;
    char sn[64];
    pt_ckpt_step_name(c, sn, sizeof sn);
    snprintf(j->last_ckpt, sizeof(j->last_ckpt), "%s/%s", tc->ckpt_dir, sn);
    if (si.waited_for_step >= 0) /* the user should know a save stalled training */
        snprintf(j->last_ckpt + strlen(j->last_ckpt), sizeof(j->last_ckpt) - strlen(j->last_ckpt),
                 " (the save of step %lld first waited for step %lld's: training stalled)", (long long)steps_done,
                 (long long)si.waited_for_step);
    *path = j->last_ckpt;
    return PT_OK;
}

/* The stop agreement (pt_train_ops.agree_stop): a two-float sum over all ranks — how many got
 * SIGINT, how many another stop signal — after every step, so that a signal to any one rank stops
 * every rank after the same step, and no rank can be left waiting in a step the others skipped.
 * SIGTERM (a preemption) wins over SIGINT when both came. */
static pt_status tm_agree_stop(void *ctx, int local, int *agreed)
{
    pt_train_job *j = ctx;
    *agreed = local;
    if (j->comm && j->world > 1) {
        float v[2] = { local == SIGINT ? 1.0f : 0.0f, local != 0 && local != SIGINT ? 1.0f : 0.0f };
        PT_CHECK(pt_comm_allreduce(j->comm, NULL, v, 2, PT_REDUCE_SUM,
                                   pt_deadline_after_ms(pt_comm_timeout_ms(j->comm))));
        *agreed = v[1] > 0 ? SIGTERM : v[0] > 0 ? SIGINT : 0;
    }
    j->stopping = *agreed != 0;
    return PT_OK;
}

pt_status pt_train_job_loop(pt_train_job *j, pt_train_summary *summary)
{
    const pt_runtime_train_args *a = j->a;
    pt_train_ops ops = { .ctx = j, .step = tm_step, .eval = a->train.eval_batches > 0 ? tm_eval : NULL,
                         .save = j->saver ? tm_save : NULL, .agree_stop = tm_agree_stop };
    if (a->on_start)
        PT_CHECK(a->on_start(a->hook_ctx, j->rt, j->comm, j->data));
    pt_train_cfg lc = a->train;
    lc.restore_begin_ns = j->restore_begin_ns;
    lc.restore_end_ns = j->restore_end_ns;
    if (j->rank != 0) {
        lc.run_dir = NULL;
        lc.metrics_path = NULL;
    }
    lc.restore_source = j->restore_source;
    PT_CHECK(pt_train_loop(&lc, &ops, j->first_step, j->rank == 0 ? a->on_event : NULL, a->event_ctx, summary));
    if (j->saver) /* the last checkpoint is committed */
        PT_CHECK(pt_ckpt_saver_wait(j->saver));
    /* the run is over and its checkpoint durable: the snapshots' memory is given back */
    return j->snap ? pt_snapshot_remove(j->snap) : PT_OK;
}

/* ---- report ---- */

pt_status pt_train_job_profile(pt_train_job *j, pt_profile_summary *sum, int *have)
{
    *have = 0;
    memset(sum, 0, sizeof(*sum));
    if (!j->prof)
        return PT_OK;
    pt_prof_event *all = NULL;
    size_t n = 0;
    double *peak = calloc((size_t)j->world * (1 + PT_MEM_KINDS), sizeof(double));
    if (!peak)
        return pt_fail(PT_ENOMEM, "out of host memory");
    double *kind_peak = peak + j->world; /* [world * PT_MEM_KINDS] */
    pt_mem_stats ms; /* every buffer of the run is allocated by now: the account's peaks by kind */
    pt_backend_mem_stats(&ms);
    pt_profile_note_mem(j->prof, &ms);
    int64_t deadline = pt_deadline_after_ms(j->comm ? pt_comm_timeout_ms(j->comm) : 300000);
    pt_status st = pt_profile_gather_mem(j->prof, j->comm, deadline, &all, &n, peak, kind_peak);
    if (st == PT_OK && j->rank == 0 && n > 0) {
        char title[256];
        snprintf(title, sizeof(title), "%s %s P=%d V=%d D=%d M=%d (measured)", j->cfg.name, j->sched->name, j->P, j->V,
                 j->D, j->M);
        pt_profile_report_opts po = { .sched = j->sched, .plan = j->plan, .cfg = &j->cfg, .n_world = j->world,
                                      .peak_flops = j->dev.peak_flops * j->world, .peak_bytes = peak,
                                      .kind_peak_bytes = kind_peak,
                                      .link_latency_s = j->dev.intra_latency_s,
                                      .link_bandwidth_Bps = j->dev.intra_bw_Bps, .title = title,
                                      .compute_clock = !j->be->marker_record ? "host clock after a stream sync"
                                                       : j->be->device_memory
                                                           ? "device timing events (markers on the compute stream)"
                                                           : "host clock at each marker (CPU calls are synchronous)" };
        st = pt_profile_summarize(all, n, &po, sum);
        if (st == PT_OK && j->a->profile_dir)
            st = pt_profile_write_dir(j->a->profile_dir, all, n, &po, sum);
        if (st == PT_OK)
            *have = 1;
        else
            pt_profile_summary_free(sum);
    }
    free(all);
    free(peak);
    return st;
}

pt_status pt_train_job_report(pt_train_job *j)
{
    pt_profile_summary sum;
    int have = 0;
    PT_CHECK(pt_train_job_profile(j, &sum, &have));
    if (!have)
        return PT_OK;
    tm_log(j, "profile (%d steps): step %.1f ms, %.0f tokens/s, %.2f GFLOP/s, MFU %.1f%%", sum.n_steps,
           1e3 * sum.step_time_s, sum.tokens_per_s, sum.flops_per_s / 1e9, 100 * sum.mfu);
    tm_log(j, "bubble: measured %.1f%%, predicted %.1f%% (simulator on the measured costs); "
              "pipeline window %.1f ms measured, %.1f ms predicted",
           100 * sum.bubble_overall, 100 * sum.pred_bubble_overall, 1e3 * sum.window_s, 1e3 * sum.pred_step_time_s);
    for (int r = 0; r < j->world; r++) {
        char tp[64] = "";
        if (j->TP > 1)
            snprintf(tp, sizeof tp, " (%.2f in tensor-parallel collectives)", 1e3 * sum.tp_comm_s[r]);
        tm_log(j, "  rank %d: bubble %.1f%% (predicted %.1f%%), comm wait %.2f ms/step%s, peak %.1f MiB", r,
               100 * sum.bubble[r], sum.has_prediction ? 100 * sum.pred_bubble[r / j->TP % j->P] : 0.0,
               1e3 * sum.comm_wait_s[r], tp, sum.peak_bytes[r] / 1048576.0);
    }
    for (int r = 0; r < j->world && sum.has_kinds; r++) { /* each kind measured beside the planner's */
        char line[512];
        size_t off = (size_t)snprintf(line, sizeof line, "  rank %d memory, MiB measured/predicted: total %.2f/%.2f", r,
                                      sum.peak_bytes[r] / 1048576.0, sum.pred_bytes[r] / 1048576.0);
        for (int q = 0; q < PT_MEM_KINDS && off < sizeof line; q++) {
            const double me = sum.kind_peak_bytes[(size_t)r * PT_MEM_KINDS + q];
            const double pr = sum.pred_kind_bytes[(size_t)r * PT_MEM_KINDS + q];
            if (me > 0 || pr > 0)
                off += (size_t)snprintf(line + off, sizeof line - off, ", %s %.2f/%.2f", pt_mem_kind_name(q),
                                        me / 1048576.0, pr / 1048576.0);
        }
        tm_log(j, "%s", line);
    }
    if (j->a->profile_dir)
        tm_log(j, "profile written to %s (trace.json, timeline.svg, summary.json)", j->a->profile_dir);
    pt_profile_summary_free(&sum);
    return PT_OK;
}

void pt_train_job_close(pt_train_job *j)
{
    pt_snapshot_close(j->snap); /* waits for its background copy */
    pt_ckpt_saver_destroy(j->saver); /* waits for its writer: the lock outlives the last write */
    pt_ckpt_unlock(j->ckpt_lock_fd);
    j->ckpt_lock_fd = -1;
    pt_runtime_destroy(j->rt);
    pt_profile_destroy(j->prof);
    if (j->be && j->stream)
        j->be->stream_destroy(j->stream);
    free(j->run_json);
    free(j->cost_arr);
    pt_sched_destroy(j->sched);
    pt_plan_destroy(j->plan);
    pt_layer_times_destroy(j->measured);
    pt_dataset_close(j->data);
    pt_comm_destroy(j->comm);
    memset(j, 0, sizeof(*j));
    j->ckpt_lock_fd = -1; /* closing twice closes no descriptor 0 */
}

pt_status pt_train_job_setup(pt_train_job *j, const pt_runtime_train_args *a)
{
    PT_CHECK(pt_train_job_open(j, a));
    PT_CHECK(pt_train_job_data(j));
    PT_CHECK(pt_train_job_plan(j));
    PT_CHECK(pt_train_job_schedule(j));
    return pt_train_job_runtime(j);
}

pt_status pt_runtime_train_main(const pt_runtime_train_args *a, pt_train_summary *summary)
{
    if (summary)
        memset(summary, 0, sizeof(*summary));
    pt_train_job j;
    pt_status st;
    PT_TRY(pt_train_job_open(&j, a), out);       /* the ranks (none to join for one process) */
    PT_TRY(pt_train_job_data(&j), out);          /* model config, data set, banner */
    PT_TRY(pt_train_job_plan(&j), out);          /* stage boundaries */
    PT_TRY(pt_train_job_schedule(&j), out);      /* the action lists and their prediction */
    PT_TRY(pt_train_job_runtime(&j), out);       /* this rank's chunks, --init-from, config.json */
    PT_TRY(pt_train_job_restore(&j), out);       /* checkpoint writer, --resume */
    PT_TRY(pt_train_job_loop(&j, summary), out); /* pt_train_loop over pt_runtime_step */
    PT_TRY(pt_train_job_report(&j), out);        /* the profile, measured next to predicted */
out:
    pt_train_job_close(&j);
    return st;
}
