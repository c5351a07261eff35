/* `pipetrain bench pipeline [--json] [--model NAME] [--micro-batches 4,8,16] ...`: pipeline throughput
 * against one process, and the measured bubble against the simulator's prediction.
 *
 * For each micro-batch count M, in the same invocation:
 *  - one process, --base-threads threads (default 2): a P = 1 1F1B schedule through the runtime
 *    in this process, a warm-up step then --steps timed steps; tokens/s = M*B*T / mean step time;
 *  - P ranks (default 2, started here through pt_launch), one thread each, schedule --schedule
 *    (default 1f1b), plan by --partition (default time): a warm-up step, then --steps profiled
 *    steps; both set up by the training job's phases (runtime.h), as `pipetrain train` is;
 *    tokens/s from the profiled step time, the measured bubble (idle share of the pipeline
 *    window per rank) and the simulator's bubble on the per-action costs measured in this run.
 * Prints a table, or one JSON object per line with --json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/runtime.h"
#include "pipetrain/schedule.h"
#include "pipetrain/timeutil.h"
#include "pipetrain/train_loop.h"

typedef struct bp_opts {
    const char *model, *schedule, *partition, *mbs;
    int B, T, steps, P, base_threads;
    const char *head_split; /* the pipeline's LM head: K layers or auto (the one-process baseline keeps one) */
} bp_opts;

typedef struct bp_result {
    double tokens_per_s, step_s, bubble, pred_bubble, window_s, pred_window_s;
    double bubble_rank[8], pred_rank[8];
    char layers[128]; /* "0-5|6-7": layers of each virtual stage */
    int head_split;   /* the LM-head layers the pipeline ran with */
} bp_result;

/* The run both measurements set up through the training job's phases (runtime.h), as `pipetrain
 * train` does: P ranks on one thread each with the pipeline's LM-head split, or one process
 * (P = 1, 1F1B: forward and fused backward per micro-batch) on --base-threads with the model's own. */
static pt_status bp_args(const bp_opts *o, int M, int P, pt_runtime_train_args *a)
{
    memset(a, 0, sizeof(*a));
    pt_train_cfg *tc = &a->train;
    pt_train_cfg_defaults(tc);
    tc->model = o->model;
    tc->data = "builtin";
    tc->seed = 1337;
    tc->steps = o->steps + 1;
    tc->threads = P > 1 ? 1 : o->base_threads;
    tc->micro_batches = M;
    tc->micro_batch_size = o->B;
    tc->seq_len = o->T;
    tc->lr = 1e-4;
    tc->lr_min = 1e-4;
    tc->warmup = 0;
    tc->eval_batches = 0;
    tc->run_dir = NULL;
    if (P > 1)
        PT_CHECK(pt_args_head_split(o->head_split, &tc->head_split));
    a->stages = P;
    a->schedule = P > 1 ? o->schedule : "1f1b";
    a->partition = o->partition;
    a->profile = P > 1;
    return PT_OK;
}

/* One rank of the pipeline measurement; rank 0 writes one line of numbers to `out`. */
static pt_status worker(const bp_opts *o, int M, const char *out_path)
{
    int in_job = 0, rank = 0, world = 1;
    PT_CHECK(pt_comm_env_job(&in_job, &rank, &world));
    pt_runtime_train_args a;
    PT_CHECK(bp_args(o, M, world, &a));
    pt_train_job j;
    pt_profile_summary sum;
    int have = 0;
    pt_status st = pt_train_job_setup(&j, &a);
    if (st != PT_OK)
        goto out;
    pt_profile_set_enabled(j.prof, 0);
    PT_TRY(pt_runtime_step(j.rt, j.data, 0, 1e-4f, NULL), out);
    pt_profile_set_enabled(j.prof, 1);
    for (int s = 1; s <= o->steps; s++)
        PT_TRY(pt_runtime_step(j.rt, j.data, s, 1e-4f, NULL), out);
    PT_TRY(pt_train_job_profile(&j, &sum, &have), out);
    if (have) {
        FILE *f = fopen(out_path, "w");
        if (!f) {
            pt_profile_summary_free(&sum);
            st = pt_fail(PT_EIO, "cannot write %s", out_path);
            goto out;
        }
        fprintf(f, "%.9g %.9g %.9g %.9g %.9g %.9g %d", sum.tokens_per_s, sum.step_time_s, sum.bubble_overall,
                sum.pred_bubble_overall, sum.window_s, sum.pred_step_time_s, j.world);
        for (int r = 0; r < j.world && r < 8; r++)
            fprintf(f, " %.9g %.9g", sum.bubble[r], sum.has_prediction ? sum.pred_bubble[r] : 0.0);
        fprintf(f, "\n");
        for (int v = 0; v < j.plan->n_vstages; v++)
            fprintf(f, "%s%d-%d", v ? "|" : "", j.plan->first_layer[v], j.plan->last_layer[v]);
        fprintf(f, "\n%d\n", pt_model_head_layers(&j.cfg));
        fclose(f);
        pt_profile_summary_free(&sum);
    }
out:
    pt_train_job_close(&j);
    return st;
}

/* The one-process run in this process: a warm-up step, then --steps timed ones. */
static pt_status baseline(const bp_opts *o, int M, double *tokens_per_s)
{
    pt_runtime_train_args a;
    PT_CHECK(bp_args(o, M, 1, &a));
    pt_train_job j;
    pt_status st = pt_train_job_setup(&j, &a);
    if (st == PT_OK)
        st = pt_runtime_step(j.rt, j.data, 0, 1e-4f, NULL);
    int64_t t0 = pt_now_ns();
    for (int s = 1; s <= o->steps && st == PT_OK; s++)
        st = pt_runtime_step(j.rt, j.data, s, 1e-4f, NULL);
    double sec = pt_seconds_between(t0, pt_now_ns()) / o->steps;
    pt_train_job_close(&j);
    PT_CHECK(st);
    *tokens_per_s = (double)M * o->B * o->T / sec;
    return PT_OK;
}

static pt_status pipeline(const bp_opts *o, int M, bp_result *r)
{
    char tmp[] = "/tmp/pt-bench-pipeline-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0)
        return pt_fail(PT_EIO, "cannot create a temporary file in /tmp");
    close(fd);
    char m_arg[16], b_arg[16], t_arg[16], s_arg[16];
    snprintf(m_arg, sizeof(m_arg), "%d", M);
    snprintf(b_arg, sizeof(b_arg), "%d", o->B);
    snprintf(t_arg, sizeof(t_arg), "%d", o->T);
    snprintf(s_arg, sizeof(s_arg), "%d", o->steps);
    char *args[] = { "/proc/self/exe", "bench", "pipeline", "--worker", "--worker-m", m_arg, "--model",
                     (char *)o->model, "--schedule", (char *)o->schedule, "--partition", (char *)o->partition,
                     "--micro-batch-size", b_arg, "--seq-len", t_arg, "--steps", s_arg, "--head-split", (char *)o->head_split,
                     "--out", tmp, NULL };
    pt_launch_opts lo = { .nproc = o->P, .nodes = 1, .node_rank = 0, .master = NULL };
    int code = 0;
    pt_status st = pt_launch(&lo, args, &code);
    if (st == PT_OK) {
        FILE *f = fopen(tmp, "r");
        int world = 0;
        if (!f || fscanf(f, "%lf %lf %lf %lf %lf %lf %d", &r->tokens_per_s, &r->step_s, &r->bubble, &r->pred_bubble,
                         &r->window_s, &r->pred_window_s, &world) != 7)
            st = pt_fail(PT_EFORMAT, "the pipeline ranks left no result in %s", tmp);
        for (int i = 0; st == PT_OK && i < world && i < 8; i++)
            if (fscanf(f, "%lf %lf", &r->bubble_rank[i], &r->pred_rank[i]) != 2)
                st = pt_fail(PT_EFORMAT, "the pipeline ranks left a short result in %s", tmp);
        if (st == PT_OK && fscanf(f, " %127s %d", r->layers, &r->head_split) != 2)
            st = pt_fail(PT_EFORMAT, "the pipeline ranks left no layer split in %s", tmp);
        if (f)
            fclose(f);
    }
    unlink(tmp);
    return st;
}

int pt_bench_pipeline(int argc, char **argv)
{
    bp_opts o = { .model = "gpt2-small", .schedule = "1f1b", .partition = "time", .mbs = "4,8,16", .B = 2,
                  .T = 256, .steps = 2, .P = 2, .base_threads = 2, .head_split = "auto" };
    int json = 0, worker_mode = 0, worker_m = 0;
    const char *out_path = NULL;
    pt_opt opts[] = {
        { "json", PT_OPT_FLAG, &json, NULL, "one JSON object per line", 0 },
        { "model", PT_OPT_STRING, &o.model, "NAME|FILE", "model preset or JSON config", 0 },
        { "schedule", PT_OPT_STRING, &o.schedule, "NAME", "pipeline schedule", 0 },
        { "partition", PT_OPT_STRING, &o.partition, "METHOD", "planner method for the stage split", 0 },
        { "micro-batches", PT_OPT_STRING, &o.mbs, "M,M,...", "micro-batch counts to measure, comma-separated", 0, "mbs" },
        { "micro-batch-size", PT_OPT_INT, &o.B, "B", "sequences per micro-batch", 0 },
        { "seq-len", PT_OPT_INT, &o.T, "T", "tokens per sequence", 0 },
        { "steps", PT_OPT_INT, &o.steps, "N", "timed steps after one warm-up step", 0 },
        { "stages", PT_OPT_INT, &o.P, "P", "pipeline ranks (one thread each)", 0 },
        { "base-threads", PT_OPT_INT, &o.base_threads, "N", "threads of the single-process run", 0 },
        { "head-split", PT_OPT_STRING, &o.head_split, "K|auto",
          "the pipeline's LM head as K vocabulary-shard layers the plan can cut, or auto: the planner's choice "
          "(the one-process run keeps one layer)", 0 },
        { "worker", PT_OPT_FLAG, &worker_mode, NULL, "internal: run as one of the pipeline ranks", 0 },
        { "worker-m", PT_OPT_INT, &worker_m, "M", "internal: micro-batches of the worker run", 0 },
        { "out", PT_OPT_STRING, &out_path, "FILE", "internal: where rank 0 of --worker writes its result", 0 },
    };
    pt_cmd_spec spec = { "pipetrain bench pipeline [--json] [options]",
                         "Pipeline tokens/s against one process (same invocation), and the measured bubble\n"
                         "against the simulator's prediction on the per-action costs measured in the run.",
                         opts, (int)(sizeof(opts) / sizeof(opts[0])),
                         "example: pipetrain bench pipeline --micro-batches 4,8,16 --json" };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (o.B < 1 || o.T < 1 || o.steps < 1 || o.P < 1 || o.P > 8)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--micro-batch-size, --seq-len and --steps must be >= 1 and "
                                                "--stages within 1..8"));
    static const char *const partitions[] = { "uniform", "params", "time", "memory", NULL };
    st = pt_args_enum("schedule", o.schedule, pt_sched_generator_names(), NULL, NULL);
    if (st == PT_OK)
        st = pt_args_enum("partition", o.partition, partitions, NULL, NULL);
    if (st != PT_OK)
        return pt_cli_finish(st);
    if (worker_mode) {
        if (!out_path || worker_m < 1)
            return pt_cli_finish(pt_fail(PT_EINVAL, "--worker needs --worker-m and --out"));
        return pt_cli_finish(worker(&o, worker_m, out_path));
    }
    if (!json)
        printf("%-12s %-8s %3s %6s %12s %12s %7s %9s %9s %s\n", "model", "schedule", "P", "M", "1proc tok/s",
               "pipe tok/s", "ratio", "bubble", "predicted", "per-rank bubble (measured/predicted)");
    char list[128], *save = NULL;
    snprintf(list, sizeof(list), "%s", o.mbs);
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int M = atoi(tok);
        if (M < 1)
            return pt_cli_finish(pt_fail(PT_EINVAL, "--micro-batches: '%s' is not a positive count", tok));
        double base = 0;
        bp_result r;
        memset(&r, 0, sizeof(r));
        st = baseline(&o, M, &base);
        if (st == PT_OK)
            st = pipeline(&o, M, &r);
        if (st != PT_OK)
            return pt_cli_finish(st);
        char ranks[256];
        size_t off = 0;
        for (int i = 0; i < o.P && off < sizeof(ranks) - 32; i++)
            off += (size_t)snprintf(ranks + off, sizeof(ranks) - off, json ? "%s[%.4f,%.4f]" : "%s%.1f/%.1f%%",
                                    i ? (json ? "," : " ") : "", json ? r.bubble_rank[i] : 100 * r.bubble_rank[i],
                                    json ? r.pred_rank[i] : 100 * r.pred_rank[i]);
        if (json)
            printf("{\"bench\":\"pipeline\",\"model\":\"%s\",\"schedule\":\"%s\",\"stages\":%d,\"microbatches\":%d,"
                   "\"micro_batch_size\":%d,\"seq_len\":%d,\"single_threads\":%d,\"single_tokens_per_s\":%.1f,"
                   "\"pipeline_tokens_per_s\":%.1f,\"ratio\":%.4f,\"step_s\":%.6f,\"bubble\":%.4f,"
                   "\"predicted_bubble\":%.4f,\"window_s\":%.6f,\"predicted_window_s\":%.6f,\"per_rank\":[%s],"
                   "\"layers\":\"%s\",\"head_split\":%d}\n",
                   o.model, o.schedule, o.P, M, o.B, o.T, o.base_threads, base, r.tokens_per_s,
                   base > 0 ? r.tokens_per_s / base : 0, r.step_s, r.bubble, r.pred_bubble, r.window_s,
                   r.pred_window_s, ranks, r.layers, r.head_split);
        else
            printf("%-12s %-8s %3d %6d %12.0f %12.0f %6.1f%% %8.1f%% %8.1f%% %s  layers %s (head in %d)\n", o.model, o.schedule,
                   o.P, M, base, r.tokens_per_s, base > 0 ? 100 * r.tokens_per_s / base : 0, 100 * r.bubble,
                   100 * r.pred_bubble, ranks, r.layers, r.head_split);
        fflush(stdout);
    }
    return 0;
}
