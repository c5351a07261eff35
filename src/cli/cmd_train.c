/* `pipetrain train`: trains a model. Every run executes a schedule through the pipeline runtime
 * (pt_runtime_train_main): a one-process run (--stages 1, no --dp) is a P = 1 schedule in this
 * process; a larger layout launches its ranks, each of which runs this command again. With no
 * arguments: gpt2-tiny on the built-in sort task on two local stages, about a minute here. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/comm.h"
#include "pipetrain/json.h"
#include "pipetrain/model.h"
#include "pipetrain/modules.h"
#include "pipetrain/partition.h"
#include "pipetrain/report.h"
#include "pipetrain/runtime.h"
#include "pipetrain/schedule.h"
#include "pipetrain/train_loop.h"

typedef struct {
    int64_t log_every;
    pt_train_sampler *sampler; /* --sample-every (cmd_sample.c), or NULL */
    int64_t sample_every;
    const struct train_args *args;
    const char *run_dir;     /* the run's directory (the default one when --run-dir was not given) */
    const char *profile_dir; /* --profile DIR, or NULL */
    int restart_count;       /* this run's automatic restarts so far (PT_RESTART_COUNT) */
} progress_ctx;

/* RUN_DIR/report.html (pipetrain/report.h), refreshed at each eval and written at the end by rank
 * 0. A report that cannot be written is said in one line and never fails the run. */
static void write_report(const char *run_dir, const char *profile_dir, int quiet)
{
    if (!run_dir)
        return;
    pt_report_opts ro = { .run_dir = run_dir, .profile_dir = profile_dir };
    pt_report_info ri;
    if (pt_report_write(&ro, &ri) == PT_OK) {
        if (!quiet)
            printf("report: %s\n", ri.output_path);
    } else {
        printf("report not written: %s\n", pt_last_error());
        pt_clear_error();
    }
}

static void fmt_duration(char *buf, size_t cap, double s)
{
    long t = s > 0 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void on_event(void *ctx, const pt_train_event *e)
{
    progress_ctx *p = ctx;
    char eta[32];
    switch (e->kind) {
    case PT_TRAIN_EV_STEP:
        if (e->recovery_s > 0)
            printf("recovered: step %lld done %.1f s after the failure (restart %d)\n", (long long)e->step,
                   e->recovery_s, p->restart_count);
        if (e->step == 1 || e->step % p->log_every == 0 || e->step == e->total) {
            fmt_duration(eta, sizeof eta, e->eta_s);
            printf("step %6lld/%lld  loss %.4f  lr %.2e  %8.0f tok/s  %7.1f ms/step  ETA %s\n",
                   (long long)e->step, (long long)e->total, e->st->loss, (double)e->st->lr, e->tokens_per_s,
                   e->step_ms, eta);
            fflush(stdout);
        }
        /* the runtime's after_step hook generated it (sample_hook_after_step) */
        if (p->sampler && e->step % p->sample_every == 0 && pt_train_sampler_write(p->sampler, e->step, stdout) != PT_OK)
            printf("sample at step %lld failed: %s\n", (long long)e->step, pt_last_error());
        break;
    case PT_TRAIN_EV_EVAL:
        if (e->ev->is_task)
            printf("eval at step %lld: loss %.4f  exact match %.1f%% (%lld/%lld held-out problems)\n",
                   (long long)e->step, e->ev->loss,
                   e->ev->n_total ? 100.0 * (double)e->ev->n_correct / (double)e->ev->n_total : 0.0,
                   (long long)e->ev->n_correct, (long long)e->ev->n_total);
        else
            printf("eval at step %lld: loss %.4f  next-token accuracy %.1f%% (%lld tokens)\n", (long long)e->step,
                   e->ev->loss,
                   e->ev->n_total ? 100.0 * (double)e->ev->n_correct / (double)e->ev->n_total : 0.0,
                   (long long)e->ev->n_total);
        write_report(p->run_dir, p->profile_dir, 1); /* the eval's metrics line is flushed */
        fflush(stdout);
        break;
    case PT_TRAIN_EV_CKPT:
        printf("checkpoint after step %lld: %s\n", (long long)e->step, e->ckpt_path ? e->ckpt_path : "(saved)");
        fflush(stdout);
        break;
    case PT_TRAIN_EV_KIND_COUNT: break;
    }
}

/* Values of the options that are not fields of pt_train_cfg, or need checking first. */
typedef struct train_args {
    pt_train_cfg cfg;
    long long seed, steps, warmup, eval_every, ckpt_every, log_every;
    double lr_min; /* < 0: lr / 10 */
    int stages, dp, nproc, chunks;
    int tp, sp; /* --tp T tensor-parallel ranks per stage, --sp sequence parallelism */
    int zero; /* --zero: 1 shards the AdamW moments over the dp replicas */
    int overlap; /* --overlap: 1 reduces the dp gradients in buckets while the backward runs */
    int bf16_stash; /* --bf16-stash: 0 keeps the blocks' internals as floats under bf16 */
    int max_restarts; /* --max-restarts: restarts of the local ranks from the newest checkpoint */
    int no_ckpt;
    int no_save_on_signal; /* --no-save-on-signal: a SIGINT/SIGTERM stops the run without a checkpoint */
    int force;          /* --force: start past the cores and memory checks (job_check.c) */
    int reset_schedule; /* --reset-schedule: a resumed run may change its learning-rate schedule */
    /* which settings the command gave (an option or a --config key): --resume takes the others
     * from the checkpoint's run */
    int given_model, given_data, given_schedule, given_steps, given_lr, given_lr_min, given_warmup, given_precision;
    const char *schedule, *partition, *layout, *config;
    const char *profile_dir, *layer_costs, *provider;
    const char *head_split; /* --head-split K|auto (pt_args_head_split) */
    const char *head_chunk; /* --head-chunk ROWS|auto|off (pt_args_head_chunk) */
    size_t mem_limit;
    double comm_timeout_s;
    int eval_batch; /* sequences per held-out eval batch: the micro-batch size before a pipeline splits it */
    long long sample_every; /* --sample-every: steps between samples (0: none) */
    int sample_tokens;
    double sample_temperature;
    const char *sample_prompt;
    int argc;    /* the command line, passed on to the ranks when this process launches them */
    char **argv;
} train_args;

/* Applies a --config file: a JSON object whose keys are option names ("steps", "micro-batch-size",
 * ...), to every option not given on the command line (the command line wins). Strings point into
 * *root, which the caller keeps until the options are no longer used. */
static pt_status apply_config(const char *path, pt_opt *opts, int n_opts, cJSON **root)
{
    PT_CHECK(pt_json_read_file(path, root));
    if (!cJSON_IsObject(*root))
        return pt_fail(PT_EINVAL, "%s: a training config is a JSON object of option names and values", path);
    const char *allowed[64];
    int n = 0;
    for (int i = 0; i < n_opts && n < 63; i++)
        if (strcmp(opts[i].name, "config") != 0)
            allowed[n++] = opts[i].name;
    allowed[n] = NULL;
    PT_CHECK(pt_json_check_keys(*root, path, allowed));
    for (int i = 0; i < n_opts; i++) {
        pt_opt *o = &opts[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(*root, o->name);
        if (!v || o->seen)
            continue;
        switch (o->type) {
        case PT_OPT_FLAG:
            if (!cJSON_IsBool(v))
                return pt_fail(PT_EINVAL, "%s: \"%s\" must be true or false", path, o->name);
            *(int *)o->dst = cJSON_IsTrue(v);
            break;
        case PT_OPT_INT: {
            long long x;
            PT_CHECK(pt_json_get_int(*root, path, o->name, -2147483647LL, 2147483647LL, &x));
            *(int *)o->dst = (int)x;
            break;
        }
        case PT_OPT_INT64: {
            long long x;
            PT_CHECK(pt_json_get_int(*root, path, o->name, -(1LL << 62), 1LL << 62, &x));
            *(long long *)o->dst = x;
            break;
        }
        case PT_OPT_DOUBLE: PT_CHECK(pt_json_get_double(*root, path, o->name, (double *)o->dst)); break;
        case PT_OPT_STRING: PT_CHECK(pt_json_get_string(*root, path, o->name, (const char **)o->dst)); break;
        case PT_OPT_BYTES:
            return pt_fail(PT_EINTERNAL, "%s: option --%s has no config-file form", path, o->name);
        }
    }
    return PT_OK;
}

/* ---- SIGINT / SIGTERM (docs/training.md#interruption) ----
 * The first one only records its number: the loop stops after the step in progress, every rank
 * of a job after the same one (pt_train_ops.agree_stop), and saves unless --no-save-on-signal.
 * Another one a second or more later ends the process at once (the default action, so the
 * parent sees 128 + the signal); one sooner is the same signal delivered twice — directly and
 * through a launcher, as SLURM and process-group kills do — and counts once. */
static volatile sig_atomic_t stop_requested; /* the first signal's number, 0 before */
static volatile sig_atomic_t stop_first_s;   /* when it came (CLOCK_MONOTONIC, whole seconds) */
static volatile sig_atomic_t stop_first_ms;  /* and the milliseconds within that second */
/* 1 once the training loop is about to run (train_hook_start). Before — while the ranks meet,
 * plan, allocate and load — there is nothing to save, and a rendezvous may wait for the whole
 * comm timeout, so the first signal ends the process at once. */
static volatile sig_atomic_t stop_in_loop;

/* From the signal handler: says msg on stderr and lets sig end the process with its default action
 * (delivered when the handler returns). Async-signal-safe. */
static void end_at_once(int sig, const char *msg)
{
    ssize_t k = write(2, msg, strlen(msg));
    (void)k;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_stop_signal(int sig)
{
    int saved = errno;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe */
    if (!stop_requested && !stop_in_loop) {
        end_at_once(sig, sig == SIGINT ? "pipetrain: SIGINT before the first step: ending at once\n"
                                       : "pipetrain: SIGTERM before the first step: ending at once\n");
        errno = saved;
        return;
    }
    if (!stop_requested) {
        stop_first_s = (sig_atomic_t)ts.tv_sec;
        stop_first_ms = (sig_atomic_t)(ts.tv_nsec / 1000000);
        stop_requested = sig;
        errno = saved;
        return;
    }
    long long since_ms = ((long long)ts.tv_sec - stop_first_s) * 1000 + ts.tv_nsec / 1000000 - stop_first_ms;
    if (since_ms < 1000) {
        errno = saved;
        return;
    }
    end_at_once(sig, sig == SIGINT ? "pipetrain: a second SIGINT: ending at once, without saving\n"
                                   : "pipetrain: a second SIGTERM: ending at once, without saving\n");
    errno = saved;
}

/* The one line an interrupted run ends with (rank 0, and the launcher of the ranks). */
static void print_stop_line(long long step, const char *ckpt, const char *ckpt_dir, int sig)
{
    if (ckpt && ckpt[0])
        printf("interrupted after step %lld; checkpoint %s; continue with the same command and --resume\n", step, ckpt);
    else if (ckpt_dir)
        printf("interrupted after step %lld by %s; not saved (--no-save-on-signal); --resume continues from the newest "
               "checkpoint in %s, if there is one\n",
               step, sig == SIGTERM ? "SIGTERM" : "SIGINT", ckpt_dir);
    else
        printf("interrupted after step %lld by %s; no checkpoint (--no-ckpt)\n", step,
               sig == SIGTERM ? "SIGTERM" : "SIGINT");
    fflush(stdout);
}

/* RUN_DIR/interrupted.json {"step", "signal", "checkpoint", "ckpt_dir"}: rank 0 leaves it when the
 * ranks stopped on a signal, for the process that launched them to say the same line. */
static void write_stop_file(const char *run_dir, long long step, const char *ckpt, const char *ckpt_dir, int sig)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/interrupted.json", run_dir);
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddNumberToObject(o, "step", (double)step) &&
        cJSON_AddStringToObject(o, "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT") &&
        (ckpt && ckpt[0] ? cJSON_AddStringToObject(o, "checkpoint", ckpt) != NULL
                         : cJSON_AddNullToObject(o, "checkpoint") != NULL) &&
        (ckpt_dir ? cJSON_AddStringToObject(o, "ckpt_dir", ckpt_dir) != NULL : 1) &&
        pt_json_write_file(path, o, 1) == PT_OK) {
        cJSON_Delete(o);
        return;
    }
    cJSON_Delete(o);
    printf("%s not written: %s\n", path, pt_last_error());
    pt_clear_error();
}

/* The launcher's line after its ranks stopped on signal `sig`, from rank 0's interrupted.json. */
static void print_launcher_stop_line(const char *stop_path, const char *ckpt_dir, int sig)
{
    cJSON *root = NULL;
    long long step = -1;
    if (pt_json_read_file(stop_path, &root) == PT_OK && pt_json_get_int(root, stop_path, "step", 0, 1LL << 62, &step) ==
                                                            PT_OK) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "checkpoint");
        print_stop_line(step, cJSON_IsString(c) ? c->valuestring : NULL, ckpt_dir, sig);
    } else {
        printf("interrupted by %s before the first step ended; nothing saved\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        fflush(stdout);
    }
    pt_clear_error();
    cJSON_Delete(root);
}

/* runs/<UTC timestamp>, with -2, -3 ... when a run of the same second exists. */
static void default_run_dir(char *buf, size_t cap)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(buf, cap, "runs/%s", stamp);
    struct stat sb;
    for (int k = 2; stat(buf, &sb) == 0 && k < 1000; k++)
        snprintf(buf, cap, "runs/%s-%d", stamp, k);
}

static void log_line(void *ctx, const char *line)
{
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

/* Starts `nproc` local ranks of this same command (pipetrain's launcher), each told the run
 * directory and its thread count explicitly so that every rank agrees on them. */
static pt_status launch_ranks(const train_args *a, int nproc, const char *run_dir, const char *ckpt_dir, int threads,
                              int *exit_code)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return pt_fail(PT_EIO, "cannot find this program's path (/proc/self/exe) to start the ranks");
    exe[n] = '\0';
    char threads_s[16];
    snprintf(threads_s, sizeof threads_s, "%d", threads);
    char **av = calloc((size_t)a->argc + 8, sizeof *av);
    if (!av)
        return pt_fail(PT_ENOMEM, "out of memory");
    int k = 0;
    av[k++] = exe;
    av[k++] = "train";
    for (int i = 0; i < a->argc; i++) /* the options after "train" */
        av[k++] = a->argv[i];
    av[k++] = "--run-dir";
    av[k++] = (char *)run_dir;
    av[k++] = "--threads";
    av[k++] = threads_s;
    av[k] = NULL;
    pt_launch_opts lo = { .nproc = nproc, .nodes = 1, .node_rank = 0, .master = NULL };
    printf("launching %d rank%s (%d thread%s each), run dir %s%s\n", nproc, nproc == 1 ? "" : "s", threads,
           threads == 1 ? "" : "s", run_dir, a->max_restarts > 0 ? ", restarting on a failure" : "");
    fflush(stdout);
    pt_cli_restart rs = { .max_restarts = a->max_restarts, .run_dir = run_dir, .ckpt_dir = ckpt_dir,
                          .steps = a->steps };
    pt_status st = pt_cli_launch_restarting(&lo, av, k, &rs, exit_code);
    free(av);
    return st;
}

/* ---- train --sample-every N: the runtime's hooks (runtime.h) ---- */

/* on_start, every rank: the ranks of data-parallel replica 0 (world ranks 0..P-1, one chunk each)
 * make a stage sampler over their chunk; the other replicas sample nothing. */
static pt_status sample_hook_start(void *ctx, pt_runtime *rt, pt_comm *comm, pt_dataset *data)
{
    progress_ctx *p = ctx;
    const train_args *a = p->args;
    if (pt_runtime_replica(rt) != 0)
        return PT_OK;
    if (pt_runtime_n_chunks(rt) != 1)
        return pt_fail(PT_EINVAL, "--sample-every needs one chunk per rank, but this schedule has %d; sample the "
                                  "checkpoint instead: pipetrain sample --ckpt DIR",
                       pt_runtime_n_chunks(rt));
    const int P = comm ? pt_comm_size(comm) / (a->dp > 0 ? a->dp : 1) : 1; /* no comm: one process */
    return pt_train_sampler_create_stage(pt_runtime_chunk_model(rt, 0), comm, pt_runtime_stage_rank(rt), P,
                                         pt_dataset_tokenizer(data), a->sample_prompt, a->sample_tokens,
                                         a->sample_temperature, (uint64_t)a->seed, &p->sampler);
}

/* on_start, every rank, as the training loop begins: signals from now on stop it after a step
 * (on_stop_signal); then the sampler's start when --sample-every asks for one. */
static pt_status train_hook_start(void *ctx, pt_runtime *rt, pt_comm *comm, pt_dataset *data)
{
    progress_ctx *p = ctx;
    stop_in_loop = 1;
    return p->sample_every > 0 ? sample_hook_start(ctx, rt, comm, data) : PT_OK;
}

/* after_step, every rank: replica 0's stages generate the sample together (rank 0 keeps it, and
 * on_event writes it after the step's line); the other replicas go on to the next step, whose
 * all-reduce waits for replica 0 within the comm timeout. */
static pt_status sample_hook_after_step(void *ctx, int64_t steps_done)
{
    progress_ctx *p = ctx;
    if (!p->sampler || steps_done % p->sample_every != 0)
        return PT_OK;
    return pt_train_sampler_generate(p->sampler, steps_done);
}

/* --sample-every in a pipelined run is refused in one line before any rank starts where the
 * generator cannot run over the ranks' chunks: several chunks per rank (interleaved, zbv, --chunks
 * V), or an LM head split into layers that a plan may cut between stages. */
static pt_status check_sample_every(const train_args *a, const pt_train_cfg *cfg, const pt_model_config *model)
{
    int V = a->chunks > 1 ? a->chunks : 1;
    const char *sched = a->schedule ? a->schedule : "1f1b";
    int is_gen = pt_sched_is_generator(sched);
    if (is_gen && V == 1 && (strcmp(sched, "interleaved") == 0 || strcmp(sched, "zbv") == 0))
        V = 2;
    if (!is_gen && access(sched, R_OK) == 0) {
        pt_schedule *sc = NULL;
        PT_CHECK(pt_sched_load(sched, &sc));
        V = sc->n_chunks;
        pt_sched_destroy(sc);
    }
    if (V > 1)
        return pt_fail(PT_EINVAL, "--sample-every generates through one chunk per rank, but schedule %s runs %d "
                                  "(--chunks); use one (a 1f1b, gpipe, zb-h1 or zb-h2 schedule without --chunks), or "
                                  "sample the checkpoint: pipetrain sample --ckpt DIR",
                       sched, V);
    int head = cfg->head_split;
    pt_model_config mc;
    if (head == 0 && model)
        head = pt_model_head_layers(model);
    else if (head == 0 && pt_model_config_load(cfg->model, &mc) == PT_OK)
        head = pt_model_head_layers(&mc);
    if (head == PT_HEAD_SPLIT_AUTO || head > 1) {
        char k[16];
        snprintf(k, sizeof k, "%d", head);
        return pt_fail(PT_EINVAL, "--sample-every generates through whole chunks, but a head split of %s (--head-split "
                                  "or the model config) cuts the LM head into layers a plan may spread over stages; "
                                  "use --head-split 1, or sample the checkpoint: pipetrain sample --ckpt DIR",
                       head == PT_HEAD_SPLIT_AUTO ? "auto" : k);
    }
    return PT_OK;
}

static void print_batch_shape(const train_args *a, const pt_train_cfg *cfg);

/* `pipetrain launch ... -- pipetrain train`: pt_cmd_train_check runs this command's parsing and
 * checks only (run_train returns after pt_job_check), for the launcher's job. */
static struct {
    int on, local_ranks, first_rank, world;
} check_mode;

/* The runtime's settings of these options (every field but the hooks, the log and the stop flag). */
static void runtime_args(const train_args *a, const pt_train_cfg *cfg, const pt_model_config *model,
                         pt_runtime_train_args *ra)
{
    memset(ra, 0, sizeof *ra);
    ra->train = *cfg;
    /* evals score held-out batches of the micro-batch size a --stages 1 run of the options has */
    ra->eval_batch_seqs = a->eval_batch % cfg->micro_batch_size == 0 ? a->eval_batch : cfg->micro_batch_size;
    ra->stages = a->stages;
    ra->replicas = a->dp;
    ra->tp = a->tp;
    ra->sp = a->sp;
    ra->zero = a->zero;
    ra->overlap = a->overlap;
    ra->no_stash = !a->bf16_stash;
    ra->chunks = a->chunks > 1 ? a->chunks : 0;
    ra->schedule = a->schedule;
    ra->partition = a->partition;
    ra->layout = a->layout;
    ra->layer_costs = a->layer_costs;
    ra->mem_limit_bytes = a->mem_limit;
    ra->profile_dir = a->profile_dir;
    ra->timeout_ms = a->comm_timeout_s > 0 ? (int64_t)(a->comm_timeout_s * 1000) : 0;
    ra->provider = a->provider;
    ra->model_config = model;
}

/* --resume: the model, data, schedule and learning-rate schedule of the checkpoint's run, unless
 * this command gives them (job_check.c); refuses a changed schedule without --reset-schedule. */
static pt_status resume_settings(train_args *a, pt_train_cfg *cfg, pt_job_resume *rs)
{
    memset(rs, 0, sizeof *rs);
    rs->model = cfg->model;
    rs->model_given = a->given_model;
    rs->data = cfg->data;
    rs->data_given = a->given_data;
    rs->schedule = a->schedule;
    rs->schedule_given = a->given_schedule;
    rs->precision = cfg->precision;
    rs->precision_given = a->given_precision;
    rs->steps = &a->steps;
    rs->steps_given = a->given_steps;
    rs->lr = &cfg->lr;
    rs->lr_given = a->given_lr;
    rs->lr_min = &a->lr_min;
    rs->lr_min_given = a->given_lr_min;
    rs->warmup = &a->warmup;
    rs->warmup_given = a->given_warmup;
    rs->reset_schedule = a->reset_schedule;
    rs->stages = a->stages;
    rs->replicas = a->dp;
    rs->tp = a->tp;
    PT_CHECK(pt_job_resume_apply(cfg->ckpt_dir, rs));
    cfg->model = rs->model;
    cfg->data = rs->data;
    a->schedule = rs->schedule;
    cfg->precision = rs->precision;
    return PT_OK;
}

static pt_status run_train(const train_args *a_in, int *interrupted)
{
    train_args args = *a_in; /* --resume may take settings from the checkpoint */
    const train_args *a = &args;
    pt_train_cfg cfg = a->cfg;
    pt_status st;
    if (a->stages < 1 || a->dp < 1 || a->nproc < 0 || a->chunks < 0 || a->tp < 1)
        return pt_fail(PT_EINVAL, "--stages, --dp, --tp and --chunks must be >= 1 and --nproc >= 0");
    if (a->sp && a->tp < 2)
        return pt_fail(PT_EINVAL, "--sp splits the sequence over the --tp ranks; give --tp 2 or more with it");
    if (a->tp > 1 && a->sample_every > 0)
        return pt_fail(PT_EINVAL, "--sample-every samples through one rank per stage, which --tp %d splits; sample the "
                                  "checkpoint instead: pipetrain sample --ckpt DIR",
                       a->tp);
    if (a->max_restarts < 0)
        return pt_fail(PT_EINVAL, "--max-restarts %d: give 0 (no restarts) or more", a->max_restarts);
    if (a->max_restarts > 0 && a->no_ckpt)
        return pt_fail(PT_EINVAL, "--max-restarts with --no-ckpt would restart from step 0 every time; drop --no-ckpt "
                                  "(and set --ckpt-every N: a restart loses at most N steps)");
    if (a->zero != 0 && a->zero != 1)
        return pt_fail(PT_EINVAL, "--zero %d: give 0 (every replica holds its stage's whole optimizer state) or 1 "
                                  "(each of the --dp replicas holds 1/D of it)",
                       a->zero);
    if (a->bf16_stash != 0 && a->bf16_stash != 1)
        return pt_fail(PT_EINVAL, "--bf16-stash %d: give 1 (a bf16 run keeps the blocks' internals in 2 bytes) or 0 "
                                  "(as floats: more memory, a little faster)",
                       a->bf16_stash);
    if (a->overlap != 0 && a->overlap != 1)
        return pt_fail(PT_EINVAL, "--overlap %d: give 0 (the gradients are reduced after the backward) or 1 (in "
                                  "buckets while it runs)",
                       a->overlap);
    int want = a->stages * a->dp * a->tp;
    int multi_opts = a->stages > 1 || a->dp > 1 || a->tp > 1 || a->nproc > 1 || a->chunks > 1 || a->schedule || a->partition ||
                     a->layout || a->profile_dir || a->mem_limit || a->layer_costs;
    int job = 0, job_rank = 0, job_size = 1;
    PT_CHECK(pt_comm_env_job(&job, &job_rank, &job_size));
    if (!job && cfg.backend && strcmp(cfg.backend, "cuda") == 0) { /* before any rank starts: one line */
        int n_gpus = 0;
        char why[256] = "";
        pt_status gs = pt_modules_gpu_count(&n_gpus, why, sizeof why);
        pt_clear_error();
        if (gs != PT_OK || n_gpus < 1)
            return pt_fail(PT_ENOTSUP, "--backend cuda: no CUDA device on this machine (%s); use --backend cpu",
                           why[0] ? why : "the CUDA runtime found none");
    }
    const char *restarts_env = getenv("PT_RESTART_COUNT"); /* set by a restarting launcher (restart.c) */
    if (a->max_restarts > 0 && job && !restarts_env)
        return pt_fail(PT_EINVAL, "--max-restarts restarts the ranks this command starts, but it is one rank of a job "
                                  "started by another launcher; give it to that launcher (pipetrain launch "
                                  "--max-restarts N -- pipetrain train ...)");
    const char *restart_from = NULL;
    int restarts = pt_comm_env_restart_count(&restart_from); /* ours, torchrun's or SLURM's */
    if (job && restart_from) { /* a rank of a restarting launcher: say which attempt in the metrics */
        cfg.restart_count = restarts;
        const char *at = getenv("PT_RESTART_FAILED_AT_NS");
        cfg.restart_failed_at_ns = at && cfg.restart_count > 0 ? strtoll(at, NULL, 10) : 0;
        const char *re = getenv("PT_RESTART_RELAUNCH_AT_NS");
        cfg.restart_relaunch_at_ns = re && cfg.restart_count > 0 ? strtoll(re, NULL, 10) : 0;
    }
    if (a->seed < 0)
        return pt_fail(PT_EINVAL, "--seed is %lld; give a number >= 0", a->seed);
    if (a->warmup < -1) /* -1 is the default's sentinel (30 steps, or a tenth of --steps) */
        return pt_fail(PT_EINVAL, "--warmup %lld: give 0 or more steps (or leave it out: 30, or a tenth of --steps if "
                                  "less)", a->warmup);
    cfg.seed = (uint64_t)a->seed;
    char run_dir[512], ckpt_dir[600];
    if (!cfg.run_dir) {
        default_run_dir(run_dir, sizeof run_dir);
        cfg.run_dir = run_dir;
    }
    if (!cfg.ckpt_dir && !a->no_ckpt) {
        snprintf(ckpt_dir, sizeof ckpt_dir, "%s/ckpt", cfg.run_dir);
        cfg.ckpt_dir = ckpt_dir;
    }
    /* every process of the run (launcher, ranks, one process) takes the same settings from the
     * checkpoint; the one that starts the run says which */
    pt_job_resume resume;
    const pt_model_config *model = NULL; /* the resumed run's config, or NULL: --model's */
    int on_disk = pt_ckpt_resume_step(cfg.ckpt_dir) >= 0;
    /* with snapshots and no disk checkpoint yet the ranks resume from memory, on these settings
     * (then `resume` is not filled, and nothing below reads it) */
    const int resumed = cfg.resume && cfg.ckpt_dir && (on_disk || cfg.snapshot_every <= 0);
    if (resumed) {
        PT_CHECK(resume_settings(&args, &cfg, &resume));
        model = resume.has_model_config ? &resume.model_config : NULL;
    }
    cfg.steps = a->steps;
    /* the default warmup (30 steps) would be the whole of a short run: at most a tenth of it */
    cfg.warmup = a->warmup >= 0 ? a->warmup : (a->steps / 10 < cfg.warmup ? a->steps / 10 : cfg.warmup);
    cfg.eval_every = a->eval_every;
    cfg.ckpt_every = a->ckpt_every;
    cfg.lr_min = a->lr_min < 0 ? cfg.lr / 10 : a->lr_min;

    if (a->sample_every > 0 && (job || multi_opts))
        PT_CHECK(check_sample_every(a, &cfg, model));
    int nproc = a->nproc > 0 ? a->nproc : want;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int sched_file = a->schedule && access(a->schedule, R_OK) == 0;
    if (!job && multi_opts && nproc != want && !sched_file)
        return pt_fail(PT_EINVAL, "--nproc %d does not match --stages %d x --dp %d x --tp %d = %d ranks; give --nproc %d "
                                  "(or leave it out)", nproc, a->stages, a->dp, a->tp, want, want);
    if (!job) {
        /* the whole job checked here before any rank starts (job_check.c): one line, exit 2 */
        pt_runtime_train_args ca;
        runtime_args(a, &cfg, model, &ca);
        pt_job_check_opts co = { .local_ranks = nproc, .first_rank = 0, .world = a->nproc > 0 ? nproc : 0,
                                 .threads_per_rank = cfg.threads > 0 ? cfg.threads
                                                     : nproc > 1 ? (int)(cores > nproc ? cores / nproc : 1)
                                                                 : (int)cores,
                                 .force = a->force };
        if (check_mode.on) { /* the ranks of `pipetrain launch`, each using every core unless --threads */
            co.local_ranks = check_mode.local_ranks;
            co.first_rank = check_mode.first_rank;
            co.world = check_mode.world;
            co.threads_per_rank = cfg.threads > 0 ? cfg.threads : (int)cores;
        }
        pt_job_check_result cr;
        PT_CHECK(pt_job_check(&ca, &co, &cr));
        if (resumed)
            PT_CHECK(pt_job_resume_finished(&resume));
        if (!check_mode.on && a->nproc == 0 && cr.world != nproc) /* a schedule file's ranks */
            nproc = cr.world;
        if (cr.note[0])
            printf("%s\n", cr.note);
        if (resumed) /* (the restore phase says why a damaged `latest` was passed over) */
            printf("%s\n", resume.line);
        fflush(stdout);
        if (check_mode.on)
            return PT_OK;
    }
    if (!job) /* the launcher, or the one process: the batch every step runs on */
        print_batch_shape(a, &cfg);
    if (!job && (nproc > 1 || a->max_restarts > 0)) {
        /* Started on its own with a multi-rank layout: become the launcher of the ranks. */
        int threads = cfg.threads > 0 ? cfg.threads : (int)(cores > nproc ? cores / nproc : 1);
        int code = 0;
        char stop_path[600];
        snprintf(stop_path, sizeof stop_path, "%s/interrupted.json", cfg.run_dir);
        (void)unlink(stop_path); /* rank 0 writes it when the ranks stop on a signal */
        st = launch_ranks(a, nproc, cfg.run_dir, cfg.ckpt_dir, threads, &code);
        if (code == 128 + SIGINT || code == 128 + SIGTERM) { /* stopped on a signal, or killed on a second */
            if (st == PT_OK)
                print_launcher_stop_line(stop_path, cfg.ckpt_dir, code - 128);
            else
                fprintf(stderr, "pipetrain train: %s\n", pt_last_error());
            pt_clear_error();
            *interrupted = code - 128;
            return PT_OK;
        }
        if (st == PT_OK)
            printf("metrics: %s/metrics.jsonl\n", cfg.run_dir);
        return st;
    }
    /* One rank of a job, or the whole run in this process (a P = 1 schedule, no comm): the
     * runtime runs the training from here. */
    cfg.stop = &stop_requested; /* set by on_stop_signal; the ranks of a job agree on it after each step */
    cfg.no_save_on_stop = a->no_save_on_signal;
    pt_runtime_train_args ra;
    runtime_args(a, &cfg, model, &ra);
    progress_ctx pr = { .log_every = a->log_every > 0 ? a->log_every : (a->steps >= 20 ? a->steps / 20 : 1),
                        .sample_every = a->sample_every, .args = a, .run_dir = cfg.run_dir,
                        .profile_dir = a->profile_dir, .restart_count = cfg.restart_count };
    ra.on_event = on_event;
    ra.event_ctx = &pr;
    ra.on_log = log_line;
    ra.on_start = train_hook_start; /* from here a signal waits for the step's end */
    ra.hook_ctx = &pr;
    if (a->sample_every > 0) {
        ra.after_step = sample_hook_after_step;
    }
    pt_train_summary sum;
    memset(&sum, 0, sizeof sum);
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    st = pt_runtime_train_main(&ra, &sum);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    pt_train_sampler_destroy(pr.sampler); /* its generator's own buffers; the chunk is gone */
    if (st == PT_OK && sum.interrupted) {
        int sig = sum.stop_signal ? sum.stop_signal : SIGINT;
        const char *ckpt = a->no_save_on_signal ? NULL : sum.last_ckpt;
        if (job_rank == 0) {
            print_stop_line((long long)sum.steps_done, ckpt, cfg.ckpt_dir, sig);
            if (cfg.run_dir)
                write_stop_file(cfg.run_dir, (long long)sum.steps_done, ckpt, cfg.ckpt_dir, sig);
            write_report(cfg.run_dir, a->profile_dir, 0); /* the profile is written by now */
        }
        *interrupted = sig;
    } else if (st == PT_OK && job_rank == 0) {
        printf("done: %lld steps in %.1f s (%.0f tokens/s); final loss %.4f", (long long)sum.steps_done, sum.seconds,
               sum.tokens_per_s, sum.final_loss);
        if (sum.has_eval)
            printf("; held-out %s %.1f%%", sum.last_eval.is_task ? "exact match" : "next-token accuracy",
                   sum.last_eval.n_total ? 100.0 * (double)sum.last_eval.n_correct / (double)sum.last_eval.n_total
                                         : 0.0);
        printf("\n");
        write_report(cfg.run_dir, a->profile_dir, 0); /* the profile is written by now */
        if (!job) /* a launcher prints it after its ranks */
            printf("metrics: %s/metrics.jsonl\n", cfg.run_dir);
    }
    return st;
}

/* ---- the batch shape: one resolution for --help and for the run ---- */

/* The micro-batch count M and size B of a run of `stages` pipeline stages, from what was given
 * (m_given, b_given > 0: --micro-batches, --micro-batch-size, their --config keys or --plan; 0: not
 * given). The default global batch, pt_train_cfg_defaults' M x B = 16 sequences per replica, is
 * kept where the options leave room: a pipeline splits it into at least 4 micro-batches per stage
 * (the smallest divisor of 16 that gives them, else 16 of one sequence), and --micro-batches M
 * alone makes B = 16 / M (at least 1). --micro-batch-size B alone keeps B with M = 4 x stages in a
 * pipeline (the default M in one process). `pipetrain train --help` prints what this gives. */
static void resolve_batch(int stages, int m_given, int b_given, int *M, int *B)
{
    pt_train_cfg d;
    pt_train_cfg_defaults(&d);
    const int global = d.micro_batch_size * d.micro_batches;
    if (m_given > 0 && b_given > 0) {
        *M = m_given;
        *B = b_given;
    } else if (m_given > 0) {
        *M = m_given;
        *B = global / m_given >= 1 ? global / m_given : 1;
    } else if (b_given > 0) {
        *B = b_given;
        *M = stages > 1 ? 4 * stages : d.micro_batches;
    } else if (stages <= 1) {
        *M = d.micro_batches;
        *B = d.micro_batch_size;
    } else {
        int m = 4 * stages;
        while (m < global && global % m != 0)
            m++;
        *M = m < global ? m : global;
        *B = global / *M;
    }
}

/* The --help default of --micro-batches (want_m) or --micro-batch-size as resolve_batch gives it
 * at each stage count: "1 at --stages 1, 8 at --stages 2 and with no --stages, 16 at --stages 3 or
 * more", and what it is when the other of the two is given. */
static void batch_default_text(char *buf, size_t cap, int want_m, int default_stages)
{
    enum { MAX_P = 64 };
    size_t off = 0;
    buf[0] = '\0';
    for (int p = 1; p <= MAX_P && off + 1 < cap;) {
        int M, B;
        resolve_batch(p, 0, 0, &M, &B);
        const int v = want_m ? M : B;
        int q = p;
        for (;;) { /* the stage counts p..q give the same value */
            int M2, B2;
            if (q == MAX_P)
                break;
            resolve_batch(q + 1, 0, 0, &M2, &B2);
            if ((want_m ? M2 : B2) != v)
                break;
            q++;
        }
        const char *dflt = default_stages >= p && default_stages <= q ? " and with no --stages" : "";
        if (q == MAX_P && q > p)
            off += (size_t)snprintf(buf + off, cap - off, "%s%d at --stages %d or more%s", p > 1 ? ", " : "", v, p,
                                    dflt);
        else if (q > p)
            off += (size_t)snprintf(buf + off, cap - off, "%s%d at --stages %d to %d%s", p > 1 ? ", " : "", v, p, q,
                                    dflt);
        else
            off += (size_t)snprintf(buf + off, cap - off, "%s%d at --stages %d%s", p > 1 ? ", " : "", v, p, dflt);
        p = q + 1;
    }
    pt_train_cfg d;
    pt_train_cfg_defaults(&d);
    if (off + 1 < cap) {
        if (want_m)
            snprintf(buf + off, cap - off, "; with --micro-batch-size given: 4 x stages, %d at --stages 1",
                     d.micro_batches);
        else
            snprintf(buf + off, cap - off, "; with --micro-batches M given: %d / M, at least 1",
                     d.micro_batches * d.micro_batch_size);
    }
}

/* The line train prints at start-up (before any rank starts): the batch the run steps on. A
 * schedule file says its own stage and micro-batch counts. */
static void print_batch_shape(const train_args *a, const pt_train_cfg *cfg)
{
    int M = cfg->micro_batches, P = a->stages;
    pt_schedule *sc = NULL;
    if (a->schedule && access(a->schedule, R_OK) == 0 && pt_sched_load(a->schedule, &sc) == PT_OK) {
        M = sc->n_microbatches;
        P = sc->n_ranks;
    }
    pt_sched_destroy(sc);
    pt_clear_error();
    const long long seqs = (long long)M * cfg->micro_batch_size * a->dp;
    char tp[48] = "";
    if (a->tp > 1)
        snprintf(tp, sizeof tp, " x %d tensor-parallel", a->tp);
    printf("batch shape: M=%d micro-batches x B=%d sequences x D=%d replica%s = %lld sequences of T=%d tokens, "
           "%lld tokens a step (%d stage%s%s)\n",
           M, cfg->micro_batch_size, a->dp, a->dp == 1 ? "" : "s", seqs, cfg->seq_len, seqs * cfg->seq_len, P,
           P == 1 ? "" : "s", tp);
    fflush(stdout);
}

/* Unknown names are refused with the valid ones before anything starts (the library's own
 * messages list the model presets and tokenizers). */
static pt_status check_names(const train_args *a)
{
    static const char *const partitions[] = { "uniform", "params", "time", "memory", NULL };
    static const char *const backends[] = { "cpu", "cuda", NULL };
    if (a->schedule && access(a->schedule, R_OK) != 0) {
        if (!pt_sched_is_generator(a->schedule))
            return pt_args_enum("schedule", a->schedule, pt_sched_generator_names(),
                                "or a readable schedule file (docs/schedules.md)", NULL);
    }
    if (a->partition)
        PT_CHECK(pt_args_enum("partition", a->partition, partitions, NULL, NULL));
    if (a->cfg.backend)
        PT_CHECK(pt_args_enum("backend", a->cfg.backend, backends, NULL, NULL));
    return PT_OK;
}

/* --precision on the CUDA backend: bf16 needs compute capability 8.0 (Ampere) or newer. Asked for on
 * an older GPU it is refused in one line; left to the default there it becomes fp32 (bf16 is the
 * default only where the GPU has it). Device 0 speaks for the node (a job's GPUs are one kind). */
static pt_status resolve_precision(train_args *a)
{
    pt_train_cfg *c = &a->cfg;
    if (!c->backend || strcmp(c->backend, "cuda") != 0 || !pt_modules_cuda() ||
        (c->precision && strcmp(c->precision, "bf16") != 0))
        return PT_OK;
    int n = 0, major = 0, minor = 0;
    if (pt_modules_gpu_count(&n, NULL, 0) != PT_OK || n <= 0) { /* the job check names a missing GPU */
        pt_clear_error();
        return PT_OK;
    }
    PT_CHECK(pt_modules_gpu_capability(0, &major, &minor));
    if (major >= 8)
        return PT_OK;
    if (c->precision)
        return pt_fail(PT_ENOTSUP, "--precision bf16 needs a GPU of compute capability 8.0 (Ampere) or newer, and "
                                   "CUDA device 0 is %d.%d; use --precision fp32",
                       major, minor);
    c->precision = "fp32";
    return PT_OK;
}

/* --schedule FILE says its own micro-batch count (the job phase takes it); a --micro-batches the
 * command gave (option or --config key) that differs is refused rather than silently overridden.
 * A file that cannot be read is left to the job check, which names it. */
static pt_status check_sched_file_m(const train_args *a, int m_given)
{
    if (!m_given || !a->schedule || access(a->schedule, R_OK) != 0)
        return PT_OK;
    pt_schedule *sc = NULL;
    if (pt_sched_is_generator(a->schedule) || pt_sched_load(a->schedule, &sc) != PT_OK) {
        pt_clear_error();
        return PT_OK;
    }
    pt_status st = PT_OK;
    if (sc->n_microbatches != a->cfg.micro_batches) {
        int gen = pt_sched_is_generator(sc->name);
        char chunks[32] = "";
        if (sc->n_chunks > 1)
            snprintf(chunks, sizeof chunks, " --chunks %d", sc->n_chunks);
        st = pt_fail(PT_EINVAL, "--micro-batches %d disagrees with --schedule %s, which has %d micro-batches; drop "
                                "--micro-batches, or make the file for %d: pipetrain simulate --schedule %s --stages %d%s "
                                "--micro-batches %d --emit FILE",
                     a->cfg.micro_batches, a->schedule, sc->n_microbatches, a->cfg.micro_batches,
                     gen ? sc->name : "NAME", sc->n_ranks, chunks, a->cfg.micro_batches);
    }
    pt_sched_destroy(sc);
    return st;
}

/* Whether option `name` was given, on the command line or in the --config file. */
static int opt_given(const pt_opt *opts, int n, const cJSON *config_root, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0 && opts[i].seen)
            return 1;
    return config_root && cJSON_GetObjectItemCaseSensitive(config_root, name) != NULL;
}

/* --plan FILE: the plan 'pipetrain plan --output FILE' wrote gives the model (unless --model is
 * given), stages, chunks, replicas, the layers of each chunk (as --layout), schedule, M, B, T and
 * the head split. An option that disagrees with it, a plan of another model or of another layer
 * count is refused in one line. model_buf and layout receive the strings the options then point at. */
static pt_status apply_plan(const char *path, train_args *a, const pt_opt *opts, int n, const cJSON *config_root,
                            char *model_buf, size_t model_cap, char *layout, size_t layout_cap)
{
    cJSON *root = NULL;
    pt_plan *p = NULL;
    PT_CHECK(pt_json_read_file(path, &root));
    pt_status st = pt_plan_from_json(root, &p);
    if (st != PT_OK) {
        cJSON_Delete(root);
        return pt_fail_wrap(st, "--plan %s", path);
    }
    if (opt_given(opts, n, config_root, "sp") && a->sp != p->sp) {
        st = pt_fail(PT_EINVAL, "--sp disagrees with --plan %s, which %s sequence parallelism; drop --sp", path,
                     p->sp ? "uses" : "does not use");
        goto out;
    }
    a->sp = p->sp;
    pt_train_cfg *cfg = &a->cfg;
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (cJSON_IsString(jm)) {
        if (opt_given(opts, n, config_root, "model") && strcmp(jm->valuestring, cfg->model) != 0) {
            st = pt_fail(PT_EINVAL, "--plan %s is a plan of %s, but --model is %s; drop --model, or make a plan of it: "
                                    "pipetrain plan --model %s ... --output FILE",
                         path, jm->valuestring, cfg->model, cfg->model);
            goto out;
        }
        snprintf(model_buf, model_cap, "%s", jm->valuestring);
        cfg->model = model_buf;
    }
    static const char *const fixed[] = { "layout", "partition", NULL };
    for (const char *const *f = fixed; *f; f++)
        if (opt_given(opts, n, config_root, *f)) {
            st = pt_fail(PT_EINVAL, "--%s and --plan %s both decide the split into chunks; give one of them", *f, path);
            goto out;
        }
    struct {
        const char *name;
        int *dst, plan;
    } ints[] = {
        { "stages", &a->stages, p->n_stages },
        { "dp", &a->dp, p->n_replicas },
        { "tp", &a->tp, p->n_tp > 1 ? p->n_tp : 1 },
        { "zero", &a->zero, p->zero },
        { "chunks", &a->chunks, p->n_chunks },
        { "micro-batches", &cfg->micro_batches, p->n_microbatches },
        { "micro-batch-size", &cfg->micro_batch_size, p->micro_batch_size },
        { "seq-len", &cfg->seq_len, p->seq_len },
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (opt_given(opts, n, config_root, ints[i].name) && *ints[i].dst != ints[i].plan) {
            st = pt_fail(PT_EINVAL, "--%s %d disagrees with --plan %s, which has %d; drop --%s, or make a plan with it",
                         ints[i].name, *ints[i].dst, path, ints[i].plan, ints[i].name);
            goto out;
        }
        *ints[i].dst = ints[i].plan;
    }
    if (opt_given(opts, n, config_root, "schedule") && a->schedule && strcmp(a->schedule, p->schedule) != 0) {
        st = pt_fail(PT_EINVAL, "--schedule %s disagrees with --plan %s, which runs %s; drop --schedule, or make a plan "
                                "with it",
                     a->schedule, path, p->schedule);
        goto out;
    }
    if (opt_given(opts, n, config_root, "head-split") && cfg->head_split != p->head_split &&
        !(cfg->head_split <= 1 && p->head_split == 1)) {
        st = pt_fail(PT_EINVAL, "--head-split disagrees with --plan %s, which cuts the LM head into %d layer%s; drop "
                                "--head-split",
                     path, p->head_split, p->head_split == 1 ? "" : "s");
        goto out;
    }
    cfg->head_split = p->head_split;
    pt_model_config mc;
    PT_TRY(pt_model_config_load(cfg->model, &mc), out);
    PT_TRY(pt_model_config_set_head_split(&mc, p->head_split), out);
    const int n_plan = p->last_layer[p->n_vstages - 1] + 1, n_model = pt_model_n_layers(&mc);
    if (n_plan != n_model) {
        st = pt_fail(PT_EINVAL, "--plan %s splits %d layers, but %s has %d (embedding, %d blocks, %d head layer%s); "
                                "make the plan of this model: pipetrain plan --model %s ... --output FILE",
                     path, n_plan, cfg->model, n_model, mc.n_layer, n_model - 1 - mc.n_layer,
                     n_model - 2 - mc.n_layer ? "s" : "", cfg->model);
        goto out;
    }
    size_t off = 0;
    layout[0] = '\0';
    for (int v = 0; v < p->n_vstages && off + 1 < layout_cap; v++)
        off += (size_t)snprintf(layout + off, layout_cap - off, "%s%d", v ? "," : "",
                                p->last_layer[v] - p->first_layer[v] + 1);
    if (off + 1 >= layout_cap) {
        st = pt_fail(PT_EINVAL, "--plan %s has too many chunks (%d) for this build's layout text", path, p->n_vstages);
        goto out;
    }
    a->layout = layout;
    /* the schedule name goes after the layout in the same buffer, which outlives the plan */
    if (p->schedule[0] && off + 2 + strlen(p->schedule) < layout_cap) {
        char *sched = layout + off + 1;
        snprintf(sched, layout_cap - off - 1, "%s", p->schedule);
        a->schedule = sched;
    }
    int n_re = 0;
    for (int v = 0; v < p->n_vstages; v++)
        n_re += p->recompute[v] != 0;
    int job = 0, job_rank = 0, job_size = 1;
    if (pt_comm_env_job(&job, &job_rank, &job_size) == PT_OK && !job) {
        printf("plan: %s (%s, %s): %d stage%s x %d chunk%s x %d replica%s, layers per chunk %s, schedule %s, M=%d B=%d "
               "T=%d\n",
               path, cfg->model, p->method, p->n_stages, p->n_stages == 1 ? "" : "s", p->n_chunks,
               p->n_chunks == 1 ? "" : "s", p->n_replicas, p->n_replicas == 1 ? "" : "s", layout, a->schedule,
               p->n_microbatches, p->micro_batch_size, p->seq_len);
        if (n_re)
            printf("note: the plan recomputes the activations of %d chunk%s; train keeps them instead (it has no "
                   "recomputation)\n",
                   n_re, n_re == 1 ? "" : "s");
    }
    pt_clear_error();
out:
    pt_plan_destroy(p);
    cJSON_Delete(root);
    return st;
}

int pt_cmd_train_check(int argc, char **argv, int local_ranks, int first_rank, int world)
{
    check_mode.on = 1;
    check_mode.local_ranks = local_ranks;
    check_mode.first_rank = first_rank;
    check_mode.world = world;
    int code = pt_cmd_train(argc, argv);
    check_mode.on = 0;
    return code;
}

int pt_cmd_train(int argc, char **argv)
{
    train_args a;
    memset(&a, 0, sizeof a);
    pt_train_cfg_defaults(&a.cfg);
    a.seed = (long long)a.cfg.seed;
    a.steps = a.cfg.steps;
    a.warmup = -1;
    a.eval_every = a.cfg.eval_every;
    a.lr_min = -1;
    a.stages = 2; /* DESIGN.md: with no arguments, two local pipeline stages */
    a.bf16_stash = 1;
    a.dp = a.chunks = a.tp = 1;
    a.nproc = 0;
    a.sample_tokens = 64;
    a.sample_temperature = 1.0;
    a.sample_prompt = "\n";
    a.argc = argc - 1;
    a.argv = argv + 1;
    pt_train_cfg *cfg = &a.cfg;
    /* --help shows the micro-batch defaults resolve_batch gives at each --stages */
    char m_default[256], b_default[256];
    batch_default_text(m_default, sizeof m_default, 1, a.stages);
    batch_default_text(b_default, sizeof b_default, 0, a.stages);
    const char *plan_path = NULL;
    char plan_model[256], plan_layout[1024];
    pt_opt opts[] = {
        { "config", PT_OPT_STRING, &a.config, "FILE",
          "JSON object of option values ({\"steps\": 100, \"lr\": 1e-3}); the command line wins", 0 },
        { "model", PT_OPT_STRING, &cfg->model, "NAME|FILE", "preset (gpt2-tiny, gpt2-small, gpt2, ...) or JSON config", 0 },
        { "head-split", PT_OPT_STRING, &a.head_split, "K|auto",
          "the LM head as K vocabulary-shard layers, so a pipeline can cut it between stages (when the head is "
          "most of the work: small models, large vocabularies); same parameters, loss equal up to rounding; auto: "
          "the planner picks K for the pipeline (one process keeps the model's own); default: the model config's, "
          "1 unless it says", 0 },
        { "head-chunk", PT_OPT_STRING, &a.head_chunk, "ROWS|auto|off",
          "the LM head's logits, loss and loss gradient this many token rows at a time, made in the forward, so "
          "no micro-batch keeps its (B*T, vocabulary) logits (1.6 GB for gpt2 at 8 x 1024 tokens); the head's "
          "weight gradient is summed over the chunks (equal up to rounding; one chunk: the same bits); auto "
          "(default): chunks of about 256 MiB of logits, at least 1024 rows (gpt2: 1280); off: all rows at once, "
          "the probabilities kept per micro-batch. Needs an unsplit head (auto is off with --head-split K > 1 "
          "or --tp)", 0 },
        { "data", PT_OPT_STRING, &cfg->data, "FILE|DIR|GLOB",
          "token shards from 'pipetrain prepare' (docs/data.md), or builtin:sort / builtin:add", 0 },
        { "steps", PT_OPT_INT64, &a.steps, "N", "optimizer steps", 0 },
        { "micro-batches", PT_OPT_INT, &cfg->micro_batches, "M",
          "micro-batches per step and replica (gradient accumulation); a step is M x B x D sequences", 0, NULL,
          m_default },
        { "micro-batch-size", PT_OPT_INT, &cfg->micro_batch_size, "B", "sequences per micro-batch", 0, NULL,
          b_default },
        { "seq-len", PT_OPT_INT, &cfg->seq_len, "T", "tokens per sequence", 0 },
        { "lr", PT_OPT_DOUBLE, &cfg->lr, "LR", "peak learning rate (AdamW)", 0 },
        { "lr-min", PT_OPT_DOUBLE, &a.lr_min, "LR", "final learning rate of the cosine decay (-1: lr / 10)", 0 },
        { "warmup", PT_OPT_INT64, &a.warmup, "N", "linear warmup steps (-1: 30, or a tenth of --steps if less)", 0 },
        { "weight-decay", PT_OPT_DOUBLE, &cfg->weight_decay, "WD", "decoupled weight decay (matrices only)", 0 },
        { "grad-clip", PT_OPT_DOUBLE, &cfg->grad_clip, "NORM", "clip the global gradient norm to this (0: off)", 0 },
        { "seed", PT_OPT_INT64, &a.seed, "N", "seed of the weights and the data order", 0 },
        { "threads", PT_OPT_INT, &cfg->threads, "N",
          "CPU threads per rank (0: all cores in one process, cores / ranks each when it starts ranks)", 0 },
        { "eval-every", PT_OPT_INT64, &a.eval_every, "N", "steps between evals on the held-out split (0: at the end)", 0 },
        { "eval-batches", PT_OPT_INT, &cfg->eval_batches, "N", "held-out batches per eval, of --micro-batch-size sequences before a pipeline splits it (0: no eval)", 0 },
        { "log-every", PT_OPT_INT64, &a.log_every, "N", "steps between progress lines (0: about 20 lines)", 0 },
        { "run-dir", PT_OPT_STRING, &cfg->run_dir, "DIR", "where config.json and metrics.jsonl go (default runs/<time>)", 0 },
        { "metrics", PT_OPT_STRING, &cfg->metrics_path, "FILE", "also write the metrics JSON lines here", 0 },
        { "init-from", PT_OPT_STRING, &cfg->init_from, "FILE|DIR",
          "start from Hugging Face weights: a GPT-2 safetensors file, or a Llama model directory (config.json + "
          "model.safetensors or its index; the model config too, unless --model is given)", 0 },
        { "ckpt-dir", PT_OPT_STRING, &cfg->ckpt_dir, "DIR",
          "write checkpoints here, at the end and every --ckpt-every (default <run-dir>/ckpt)", 0 },
        { "no-ckpt", PT_OPT_FLAG, &a.no_ckpt, NULL, "write no checkpoint", 0 },
        { "ckpt-every", PT_OPT_INT64, &a.ckpt_every, "N", "steps between checkpoints (0: only at the end)", 0 },
        { "snapshot-every", PT_OPT_INT64, &cfg->snapshot_every, "K",
          "with --max-restarts: every K steps each rank copies its state to host memory and to a rank on another "
          "node, in the background; a restart reloads the newest one (docs/fault-tolerance.md; 0: none)", 0 },
        { "snapshot-dir", PT_OPT_STRING, &cfg->snapshot_dir, "DIR",
          "the node's snapshot store, on a memory file system (default /dev/shm/pipetrain-UID/<ckpt-dir's hash>)", 0 },
        { "no-save-on-signal", PT_OPT_FLAG, &a.no_save_on_signal, NULL,
          "on SIGINT/SIGTERM stop after the step without writing a checkpoint (default: write one, then exit 130/143)",
          0 },
        { "resume", PT_OPT_FLAG, &cfg->resume, NULL, "continue from the newest checkpoint in --ckpt-dir (or <run-dir>/ckpt)", 0 },
        { "reset-schedule", PT_OPT_FLAG, &a.reset_schedule, NULL,
          "with --resume: let a new --steps/--lr/--lr-min/--warmup re-plan the learning rate (else refused)", 0 },
        { "force", PT_OPT_FLAG, &a.force, NULL,
          "start even when the ranks' threads exceed the cores 4x over or their predicted memory the RAM", 0 },
        { "backend", PT_OPT_STRING, &cfg->backend, "cpu|cuda", "kernel backend", 0 },
        { "precision", PT_OPT_STRING, &cfg->precision, "fp32|bf16",
          "bf16: mixed precision, fp32 master weights and AdamW moments, bf16 activations, gradients of activations "
          "and stage messages (docs/cuda.md; default bf16 on cuda, fp32 on cpu)", 0 },
        { "stages", PT_OPT_INT, &a.stages, "P", "pipeline stages; P x D > 1 starts that many local ranks (1: one process)", 0 },
        { "dp", PT_OPT_INT, &a.dp, "D", "data-parallel replicas", 0 },
        { "tp", PT_OPT_INT, &a.tp, "T",
          "tensor-parallel ranks per stage (Megatron-style: heads, MLP and vocabulary split over T ranks of one node; "
          "the job has stages x dp x tp ranks, docs/parallelism.md)", 0 },
        { "sp", PT_OPT_FLAG, &a.sp, NULL,
          "sequence parallelism with --tp: norms, residuals and stage messages on 1/T of the tokens", 0 },
        { "max-restarts", PT_OPT_INT, &a.max_restarts, "N",
          "when a rank fails or hangs past --comm-timeout, stop the others and restart from the newest "
          "checkpoint, up to N times (one line per failure; a step failing three times stops the run)", 0 },
        { "zero", PT_OPT_INT, &a.zero, "0|1",
          "1: shard the AdamW moments over the --dp replicas (each holds 1/D; gradients reduce-scattered, "
          "parameters all-gathered; the same bits as 0)", 0 },
        { "overlap", PT_OPT_INT, &a.overlap, "0|1",
          "1: reduce the --dp replicas' gradients in buckets while the backward still runs (a communication "
          "thread; the same bits as 0; cpu backend)", 0 },
        { "bf16-stash", PT_OPT_INT, &a.bf16_stash, "0|1",
          "with --precision bf16: 1 keeps each block's internals from its forward to its backward (and a split "
          "backward's kept gradients) in 2 bytes an element (the same bits, half their memory, a packing and a "
          "widening pass); 0 keeps them as floats", 0 },
        { "nproc", PT_OPT_INT, &a.nproc, "N", "local ranks to start (0: stages x dp)", 0 },
        { "chunks", PT_OPT_INT, &a.chunks, "V", "virtual chunks per rank (interleaved, zbv: 2 when left at 1)", 0 },
        { "schedule", PT_OPT_STRING, &a.schedule, "NAME|FILE",
          "gpipe, 1f1b, interleaved, looped-bfs, zb-h1, zb-h2, zbv, or a schedule file (default 1f1b)", 0 },
        { "partition", PT_OPT_STRING, &a.partition, "METHOD", "uniform, params, time or memory (default time)", 0 },
        { "layout", PT_OPT_STRING, &a.layout, "N,N,...", "layers per chunk, embedding and head included (\"3,3\")", 0 },
        { "plan", PT_OPT_STRING, &plan_path, "FILE",
          "run the plan 'pipetrain plan --output FILE' wrote: its model, stages, chunks, replicas, layers per chunk, "
          "schedule, M, B and T (an option that disagrees is refused)", 0 },
        { "layer-costs", PT_OPT_STRING, &a.layer_costs, "FILE", "measured layer times from 'pipetrain profile-layers'", 0 },
        { "mem-limit", PT_OPT_BYTES, &a.mem_limit, "BYTES", "memory per rank (24G, 512M); refuse plans that exceed it", 0 },
        { "profile", PT_OPT_STRING, &a.profile_dir, "DIR",
          "write trace.json, timeline.svg and summary.json (measured vs predicted) there", 0 },
        { "comm-timeout", PT_OPT_DOUBLE, &a.comm_timeout_s, "SECONDS",
          "how long any rank waits for a peer before failing (0: PT_COMM_TIMEOUT or 300)", 0 },
        { "provider", PT_OPT_STRING, &a.provider, "NAME", "libfabric provider (shm, tcp; default: automatic)", 0 },
        { "sample-every", PT_OPT_INT64, &a.sample_every, "N",
          "every N steps print a short sample from the model (in a pipeline, generated through the stages; 0: never)", 0 },
        { "sample-prompt", PT_OPT_STRING, &a.sample_prompt, "TEXT", "the samples' prompt (\"\": the end-of-text token)", 0 },
        { "sample-tokens", PT_OPT_INT, &a.sample_tokens, "N", "tokens per sample", 0 },
        { "sample-temperature", PT_OPT_DOUBLE, &a.sample_temperature, "T", "the samples' temperature (0: greedy)", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain train [options]",
        "Train a GPT-2 style model with AdamW (warmup + cosine), gradient accumulation and clipping.\n"
        "With no options: gpt2-tiny learns the built-in task (sort the letters: \"sort:dcab=abcd\") on two\n"
        "local pipeline stages (1F1B, 8 micro-batches of 2), about a minute here; rank 0 prints the plan, the\n"
        "simulator's prediction, progress, held-out evals through the pipeline (exact-match accuracy of\n"
        "greedy answers, the batches a one-process run scores) and the measured bubble. --stages 1 trains\n"
        "in one process. Metrics (one JSON object per step and per eval) go to\n"
        "<run-dir>/metrics.jsonl. A NaN or Inf loss stops the run naming the last good step.",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "examples:\n"
        "  pipetrain train\n"
        "  pipetrain train --data builtin:add --steps 1500\n"
        "  pipetrain prepare --tokenizer gpt2 --input book.txt --output data/book && pipetrain train --data data/book "
        "--steps 500\n"
        "  pipetrain train --model gpt2 --init-from gpt2.safetensors --data data/book --lr 1e-4\n"
        "  pipetrain train --init-from Llama-3.2-1B --data data/book --lr 1e-5\n"
        "  pipetrain train --stages 2 --schedule 1f1b --micro-batches 8 --profile prof\n"
        "  pipetrain train --stages 2 --dp 2 --schedule zb-h1 --micro-batches 8\n"
        "  pipetrain plan --model gpt2-tiny --gpus 2 --seq-len 128 --output plan.json && pipetrain train --plan plan.json",
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    cJSON *config_root = NULL;
    if (a.config)
        st = apply_config(a.config, opts, (int)(sizeof opts / sizeof opts[0]), &config_root);
    if (st == PT_OK)
        st = pt_args_head_split(a.head_split, &cfg->head_split);
    if (st == PT_OK)
        st = pt_args_head_chunk(a.head_chunk, &cfg->head_chunk);
    /* --init-from a Hugging Face model directory: its config.json is the model unless --model says */
    struct stat init_sb;
    int model_seen = config_root && cJSON_GetObjectItemCaseSensitive(config_root, "model");
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (strcmp(opts[i].name, "model") == 0)
            model_seen |= opts[i].seen;
    if (!model_seen && cfg->init_from && stat(cfg->init_from, &init_sb) == 0 && S_ISDIR(init_sb.st_mode))
        cfg->model = cfg->init_from;
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    if (st == PT_OK && plan_path)
        st = apply_plan(plan_path, &a, opts, n_opts, config_root, plan_model, sizeof plan_model, plan_layout,
                        sizeof plan_layout);
    if (st == PT_OK)
        st = check_names(&a);
    if (st == PT_OK)
        st = resolve_precision(&a);
    /* The batch shape: what --micro-batches / --micro-batch-size (or --config, --plan) gave, the
     * rest from resolve_batch, the function --help's defaults come from. */
    a.eval_batch = cfg->micro_batch_size; /* as a one-process run of the default options evaluates */
    {
        const int mb_seen = plan_path || opt_given(opts, n_opts, config_root, "micro-batches");
        const int mbs_seen = plan_path || opt_given(opts, n_opts, config_root, "micro-batch-size");
        resolve_batch(a.stages, mb_seen ? cfg->micro_batches : 0, mbs_seen ? cfg->micro_batch_size : 0,
                      &cfg->micro_batches, &cfg->micro_batch_size);
    }
    if (st == PT_OK)
        st = check_sched_file_m(&a, opt_given(opts, n_opts, config_root, "micro-batches"));
    /* what the command gave: --resume takes the rest from the checkpoint's run */
    a.given_model = model_seen || plan_path || (cfg->init_from && cfg->model == cfg->init_from);
    a.given_data = opt_given(opts, n_opts, config_root, "data");
    a.given_schedule = plan_path || opt_given(opts, n_opts, config_root, "schedule");
    a.given_precision = opt_given(opts, n_opts, config_root, "precision");
    a.given_steps = opt_given(opts, n_opts, config_root, "steps");
    a.given_lr = opt_given(opts, n_opts, config_root, "lr");
    a.given_lr_min = opt_given(opts, n_opts, config_root, "lr-min");
    a.given_warmup = opt_given(opts, n_opts, config_root, "warmup");
    int interrupted = 0;
    if (st == PT_OK)
        st = run_train(&a, &interrupted);
    cJSON_Delete(config_root);
    if (st == PT_OK && interrupted)
        return 128 + interrupted; /* the shell's code for "ended by SIGINT" (130) or SIGTERM (143) */
    return pt_cli_finish(st);
}

