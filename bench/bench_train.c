/* `pipetrain bench train`: single-process training throughput of GPT-2 and Llama shapes on the CPU.
 *
 * Each configuration runs the step `pipetrain train --stages 1` runs (a P = 1 schedule through the
 * runtime, set up by the training job's phases: data, forward, backward, tied reduction, global
 * norm, clipping, fused AdamW; forward / backward / optimizer times from the runtime's action
 * events) on random tokens where every position is a
 * target, as ../shared/bench/torch_gpt2.py does, and reports tokens/s, achieved GFLOP/s and the
 * share of this machine's measured fp32 FMA peak (273 GFLOP/s on 1 core, 540 on 2).
 *
 * FLOPs per step, the same count as torch_gpt2.py so GFLOP/s compare directly (multiply-add = 2):
 *     (6 * N + 12 * n_layer * T * C) * B * T
 * N: parameters except the position embedding, i.e. the weights that take part in matrix products
 * (per block 12 C^2, and the tied LM head Vp * C with the padded vocab) plus biases and layernorms
 * (< 0.2%). The second term is attention's scores (Q K^T) and weighted sum (A V) over the full T x T
 * (no causal halving), forward and backward. ms/step is the median over the timed steps.
 * Llama (bench/torch_llama.py counts the same): N is every parameter (no position table): per block
 * C (C + 2 NKV hs) + C^2 + 3 C H and two norms, the embedding Vp C, the LM head Vp C when untied;
 * the attention term is the same 12 L T C (NH * hs = C whatever NKV).
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/json.h"
#include "pipetrain/runtime.h"
#include "pipetrain/timeutil.h"
#include "pipetrain/train_loop.h"

typedef struct {
    const char *model;
    int B, T;
} bench_shape;

static const bench_shape shapes[] = {
    { "gpt2", 4, 64 },
    { "gpt2", 8, 128 },
    { "gpt2-small", 8, 256 },
    { "llama-small", 8, 256 },
};

static double flops_per_step(const pt_model_config *c, int B, int T)
{
    double C = c->n_embd, tokens = (double)B * T;
    double n = (double)c->vocab_padded * C + (12.0 * C * C + 13.0 * C) * c->n_layer + 2.0 * C;
    if (c->arch == PT_ARCH_LLAMA) {
        double kv = (double)pt_model_kv_heads(c) * (C / c->n_head), H = c->intermediate_size;
        n = (double)c->vocab_padded * C * (pt_model_tied(c) ? 1 : 2) +
            (C * (C + 2 * kv) + C * C + 3 * C * H + 2 * C) * c->n_layer + C;
    }
    return (6.0 * n + 12.0 * c->n_layer * (double)T * C) * tokens;
}

/* A token file of random ids in [0, vocab): every position is a target. */
static pt_status random_token_file(const char *path, int vocab, int64_t n)
{
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    if (!tok)
        return pt_fail(PT_ENOMEM, "out of memory for %lld benchmark tokens", (long long)n);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        tok[i] = (int32_t)(x % (uint64_t)vocab);
    }
    pt_status st = pt_token_file_write(path, vocab, tok, n);
    free(tok);
    return st;
}

typedef struct {
    double ms, fwd_ms, bwd_ms, optim_ms, tokens_per_s, gflops, pct_peak, loss;
    long long device_delta, heap_delta;
} bench_result;

/* Forward, backward and optimizer (reduce: tied sum + norm; step: clip + AdamW) seconds of the
 * recorded events, per step of n_steps. */
static void split_times(const pt_prof_event *ev, size_t n, int n_steps, bench_result *r)
{
    for (size_t i = 0; i < n; i++) {
        double ms = (double)(ev[i].end_ns - ev[i].start_ns) / 1e6 / n_steps;
        switch ((pt_action_kind)ev[i].kind) {
        case PT_ACT_FORWARD: r->fwd_ms += ms; break;
        case PT_ACT_BACKWARD:
        case PT_ACT_BACKWARD_INPUT:
        case PT_ACT_BACKWARD_WEIGHT: r->bwd_ms += ms; break;
        case PT_ACT_REDUCE_GRADS:
        case PT_ACT_OPTIMIZER_STEP: r->optim_ms += ms; break;
        default: break; /* sends and receives: none in one process */
        }
    }
}

/* times: scratch of `steps` doubles, allocated by the caller before anything is measured. */
static pt_status bench_one(const bench_shape *sh, int threads, int steps, int warmup, const char *tok_path,
                           double *times, bench_result *r)
{
    pt_model_config mcfg;
    PT_CHECK(pt_model_config_load(sh->model, &mcfg));
    PT_CHECK(random_token_file(tok_path, mcfg.vocab_size, 1 << 18));
    /* the one-process run `pipetrain train --stages 1` makes: a P = 1 schedule through the runtime */
    pt_runtime_train_args a;
    memset(&a, 0, sizeof a);
    pt_train_cfg *cfg = &a.train;
    pt_train_cfg_defaults(cfg);
    cfg->model = sh->model;
    cfg->data = tok_path;
    cfg->run_dir = NULL;
    cfg->threads = threads;
    cfg->micro_batch_size = sh->B;
    cfg->seq_len = sh->T;
    cfg->steps = warmup + steps;
    cfg->lr = 1e-4;
    cfg->lr_min = 1e-4;
    cfg->warmup = 0;
    cfg->eval_batches = 0;
    a.stages = 1;
    a.profile = 1; /* the forward / backward / optimizer split of the timed steps */
    pt_train_job j;
    pt_status st = pt_train_job_setup(&j, &a);
    memset(r, 0, sizeof *r);
    pt_runtime_step_info s;
    if (st == PT_OK)
        pt_profile_set_enabled(j.prof, 0);
    for (int i = 0; i < warmup && st == PT_OK; i++)
        st = pt_runtime_step(j.rt, j.data, i, (float)cfg->lr, &s);
    if (st == PT_OK)
        pt_profile_set_enabled(j.prof, 1);
    size_t dev0 = pt_backend_bytes_in_use();
    struct mallinfo2 mi0 = mallinfo2();
    for (int i = 0; i < steps && st == PT_OK; i++) {
        int64_t t0 = pt_now_ns();
        st = pt_runtime_step(j.rt, j.data, warmup + i, (float)cfg->lr, &s);
        times[i] = pt_seconds_between(t0, pt_now_ns());
        r->loss = s.loss;
    }
    struct mallinfo2 mi1 = mallinfo2();
    r->device_delta = (long long)pt_backend_bytes_in_use() - (long long)dev0;
    r->heap_delta = (long long)mi1.uordblks - (long long)mi0.uordblks;
    if (st == PT_OK) {
        pt_prof_event *ev = NULL;
        size_t n = 0;
        st = pt_profile_gather(j.prof, NULL, 0, &ev, &n, NULL);
        if (st == PT_OK)
            split_times(ev, n, steps, r);
        free(ev);
    }
    if (st == PT_OK) {
        double med = pt_cli_median(times, (size_t)steps);
        double tokens = (double)sh->B * sh->T;
        r->ms = med * 1e3;
        r->tokens_per_s = tokens / med;
        r->gflops = flops_per_step(&j.cfg, sh->B, sh->T) / med / 1e9;
        r->pct_peak = 100.0 * r->gflops / (threads == 1 ? 273.0 : 540.0);
    }
    pt_train_job_close(&j);
    return st;
}

int pt_bench_train(int argc, char **argv)
{
    int json = 0, threads = 0, steps = 5, warmup = 2, batch = 0, seq = 0;
    const char *only = NULL;
    pt_opt opts[] = {
        { "json", PT_OPT_FLAG, &json, NULL, "one JSON object per configuration", 0 },
        { "threads", PT_OPT_INT, &threads, "N", "CPU threads (0: 1 and 2, each)", 0 },
        { "steps", PT_OPT_INT, &steps, "N", "timed steps per configuration", 0 },
        { "warmup", PT_OPT_INT, &warmup, "N", "untimed steps first", 0 },
        { "model", PT_OPT_STRING, &only, "NAME", "only the configurations of this model (gpt2, gpt2-small, llama-small)", 0 },
        { "micro-batch-size", PT_OPT_INT, &batch, "B",
          "with --seq-len: one configuration of --model (default gpt2) at B x T", 0, "batch" },
        { "seq-len", PT_OPT_INT, &seq, "T", "tokens per sequence of that configuration", 0, "seq" },
    };
    pt_cmd_spec spec = {
        "pipetrain bench train [--json] [--threads N] [--steps N]",
        "Single-process training throughput on the CPU: gpt2 (124M) at B=4,T=64 and B=8,T=128, gpt2-small\n"
        "at B=8,T=256, llama-small (100M) at B=8,T=256, on 1 and 2 threads, random tokens. Reports the median ms/step split into forward,\n"
        "backward and optimizer (norm + clip + AdamW), tokens/s, achieved GFLOP/s counted as\n"
        "(6 N + 12 L T C) B T with N the parameters except the position embedding (as torch_gpt2.py), and\n"
        "its share of the measured fp32 peak (273 GFLOP/s on 1 core, 540 on 2). Device and heap bytes\n"
        "allocated during the timed steps are reported too (0: the step allocates nothing).",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "compare with PyTorch side by side: bench/compare_torch.sh",
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (steps < 1 || warmup < 0 || threads < 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--steps must be >= 1, --warmup and --threads >= 0"));
    if ((batch > 0) != (seq > 0) || batch < 0 || seq < 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--micro-batch-size and --seq-len go together, both >= 1"));

    double *times = malloc((size_t)steps * sizeof *times);
    if (!times)
        return pt_cli_finish(pt_fail(PT_ENOMEM, "out of memory for %d step times", steps));
    char tok_path[] = "/tmp/pipetrain-bench-XXXXXX";
    int fd = mkstemp(tok_path);
    if (fd < 0) {
        free(times);
        return pt_cli_finish(pt_fail(PT_EIO, "cannot create a temporary token file in /tmp"));
    }
    close(fd);
    if (!json)
        printf("%-11s %3s %4s %3s %9s %8s %8s %8s %9s %8s %6s\n", "model", "B", "T", "thr", "ms/step", "fwd", "bwd",
               "optim", "tokens/s", "GFLOP/s", "%peak");
    int thread_list[2] = { 1, 2 }, n_thr = 2;
    if (threads > 0) {
        thread_list[0] = threads;
        n_thr = 1;
    }
    const bench_shape custom[1] = { { only ? only : "gpt2", batch, seq } };
    const bench_shape *list = shapes;
    size_t n_shapes = sizeof shapes / sizeof shapes[0];
    if (batch > 0 || seq > 0) {
        list = custom;
        n_shapes = 1;
        only = NULL;
    }
    for (size_t i = 0; i < n_shapes && st == PT_OK; i++) {
        if (only && strcmp(only, list[i].model) != 0)
            continue;
        for (int k = 0; k < n_thr && st == PT_OK; k++) {
            bench_result r;
            st = bench_one(&list[i], thread_list[k], steps, warmup, tok_path, times, &r);
            if (st != PT_OK)
                break;
            if (json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "bench", "train");
                cJSON_AddStringToObject(o, "impl", "pipetrain");
                cJSON_AddStringToObject(o, "model", list[i].model);
                cJSON_AddNumberToObject(o, "B", list[i].B);
                cJSON_AddNumberToObject(o, "T", list[i].T);
                cJSON_AddNumberToObject(o, "threads", thread_list[k]);
                cJSON_AddNumberToObject(o, "steps", steps);
                cJSON_AddNumberToObject(o, "ms_per_step", r.ms);
                cJSON_AddNumberToObject(o, "fwd_ms", r.fwd_ms);
                cJSON_AddNumberToObject(o, "bwd_ms", r.bwd_ms);
                cJSON_AddNumberToObject(o, "optim_ms", r.optim_ms);
                cJSON_AddNumberToObject(o, "tokens_per_s", r.tokens_per_s);
                cJSON_AddNumberToObject(o, "gflops", r.gflops);
                cJSON_AddNumberToObject(o, "pct_peak", r.pct_peak);
                cJSON_AddNumberToObject(o, "loss", r.loss);
                cJSON_AddNumberToObject(o, "device_bytes_allocated_in_step", (double)r.device_delta);
                cJSON_AddNumberToObject(o, "heap_bytes_delta", (double)r.heap_delta);
                char *line = cJSON_PrintUnformatted(o);
                if (line)
                    printf("%s\n", line);
                free(line);
                cJSON_Delete(o);
            }
            else
                printf("%-11s %3d %4d %3d %9.1f %8.1f %8.1f %8.1f %9.0f %8.1f %5.1f%%\n", list[i].model,
                       list[i].B, list[i].T, thread_list[k], r.ms, r.fwd_ms, r.bwd_ms, r.optim_ms, r.tokens_per_s,
                       r.gflops, r.pct_peak);
            fflush(stdout);
        }
    }
    unlink(tok_path);
    free(times);
    return pt_cli_finish(st);
}
