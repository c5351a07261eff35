/* `pipetrain bench optim [--json] [--model gpt2] [--backend cpu|cuda] [--threads N] [--steps N]`:
 * the AdamW step (pt_optim_step) of a whole model, one backend call per tensor (adamw_update, the
 * path of a backend without the multi-tensor op) against one call for all of them
 * (adamw_multi_update over the optimizer's table of segments: one OpenMP team balanced by elements
 * on the CPU, one kernel launch on CUDA) — issue 19, "AdamW as one multi-tensor kernel".
 *
 * The model (default gpt2, 124M parameters, 148 tensors) is built on the backend with weights from
 * pt_model_init_weights and a fixed pseudo-random gradient; both paths update the same optimizer
 * (pt_optim_set_multi_tensor switches it), --warmup untimed steps then --steps timed ones each,
 * alternating per round (--rounds) so a slow minute of a loaded machine falls on both alike. Each
 * step is timed on the host around pt_optim_step and a stream sync. Per thread count and path it
 * prints the median and fastest step in ms and the memory traffic that implies (28 bytes per
 * element: param, grad, m, v read, param, m, v written); then the ratio per-tensor / multi-tensor.
 * One JSON object per line with --json (the table goes to stderr then). No BLAS call is involved,
 * so OPENBLAS_CORETYPE does not matter here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/backend.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"
#include "pipetrain/timeutil.h"

typedef struct bo_stats {
    double median_ms, min_ms;
} bo_stats;

/* One thread count: both paths on one model and optimizer. times: 2 * rounds * steps doubles. */
static pt_status bench_threads(const pt_backend *be, const pt_model_config *cfg, int threads, int steps, int warmup,
                               int rounds, double *times, bo_stats out[2], size_t *n_elems, int *n_tensors)
{
    pt_stream *s = NULL;
    pt_model *m = NULL;
    pt_optim *o = NULL;
    float *host = NULL;
    pt_status st = PT_OK;
    PT_TRY(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = threads }, &s), done);
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 16, .n_slots = 1 };
    PT_TRY(pt_model_create(cfg, 0, pt_model_n_layers(cfg) - 1, &mo, be, s, &m), done);
    PT_TRY(pt_model_init_weights(m, 1), done);
    size_t n = pt_model_n_params(m);
    *n_elems = n;
    *n_tensors = pt_model_n_tensors(m);
    host = malloc(n * sizeof(float));
    if (!host) {
        st = pt_fail(PT_ENOMEM, "out of host memory for %zu gradient floats", n);
        goto done;
    }
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) { /* gradients ~ 1e-3, of both signs */
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        host[i] = (float)((double)(r >> 40) / 8388608.0 - 1.0) * 1e-3f;
    }
    PT_TRY(be->memcpy_h2d(s, pt_model_grads(m), host, n * sizeof(float)), done);
    pt_adamw_cfg ac = { .lr = 6e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                        .grad_clip = 1.0f };
    PT_TRY(pt_optim_create(m, &ac, &o), done);
    if (!pt_optim_multi_tensor(o)) {
        st = pt_fail(PT_ENOTSUP, "backend '%s' has no multi-tensor AdamW (adamw_multi_update) to compare",
                     be->name);
        goto done;
    }
    for (int round = 0; round < rounds; round++)
        for (int path = 0; path < 2; path++) { /* 0: per tensor, 1: multi-tensor */
            PT_TRY(pt_optim_set_multi_tensor(o, path), done);
            for (int k = 0; k < warmup + steps; k++) {
                int64_t t0 = pt_now_ns();
                PT_TRY(pt_optim_step(o, 6e-4f, 1.0f), done);
                PT_TRY(be->stream_sync(s), done);
                if (k >= warmup)
                    times[(size_t)path * rounds * steps + (size_t)round * steps + (k - warmup)] =
                        1e3 * pt_seconds_between(t0, pt_now_ns());
            }
        }
    for (int path = 0; path < 2; path++) {
        double *x = times + (size_t)path * rounds * steps;
        size_t cnt = (size_t)rounds * steps;
        out[path].median_ms = pt_cli_median(x, cnt);
        out[path].min_ms = x[0];
    }
done:
    free(host);
    pt_optim_destroy(o);
    pt_model_destroy(m);
    if (s)
        be->stream_destroy(s);
    return st;
}

int pt_bench_optim(int argc, char **argv)
{
    int json = 0, threads = 0, steps = 10, warmup = 2, rounds = 3;
    const char *model = "gpt2", *backend = "cpu";
    pt_opt opts[] = {
        { "json", PT_OPT_FLAG, &json, NULL, "one JSON object per line on stdout (the table goes to stderr)", 0 },
        { "model", PT_OPT_STRING, &model, "NAME|FILE", "model preset or JSON config", 0 },
        { "backend", PT_OPT_STRING, &backend, "NAME", "cpu or cuda", 0 },
        { "threads", PT_OPT_INT, &threads, "N", "CPU threads (0: 1 and 2, each; ignored on cuda)", 0 },
        { "steps", PT_OPT_INT, &steps, "N", "timed steps per path and round", 0 },
        { "warmup", PT_OPT_INT, &warmup, "N", "untimed steps before them", 0 },
        { "rounds", PT_OPT_INT, &rounds, "N", "rounds of both paths, alternating", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain bench optim [--json] [--model gpt2] [--backend cpu|cuda] [--threads N] [--steps N]",
        "The AdamW step of a whole model (pt_optim_step): one backend call per tensor (adamw_update)\n"
        "against one call for all tensors (adamw_multi_update: one OpenMP team balanced by elements on\n"
        "the CPU, one kernel launch on CUDA). Median and fastest ms per step, implied GB/s (28 bytes per\n"
        "element), and the ratio per-tensor / multi-tensor. Both paths give the same bits (tests:\n"
        "kernels.adamw_multi, train.optim_multi).",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        NULL,
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (steps < 1 || warmup < 0 || threads < 0 || rounds < 1)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--steps and --rounds must be >= 1, --warmup and --threads >= 0"));
    const pt_backend *be;
    st = pt_backend_get(backend, &be);
    if (st != PT_OK)
        return pt_cli_finish(st);
    pt_model_config cfg;
    st = pt_model_config_load(model, &cfg);
    if (st != PT_OK)
        return pt_cli_finish(st);
    double *times = malloc(2 * (size_t)rounds * steps * sizeof *times);
    if (!times)
        return pt_cli_finish(pt_fail(PT_ENOMEM, "out of memory for the step times"));
    int thread_list[2] = { 1, 2 }, n_thr = 2;
    if (threads > 0 || strcmp(be->name, "cpu") != 0) {
        thread_list[0] = threads;
        n_thr = 1;
    }
    FILE *tab = json ? stderr : stdout;
    for (int k = 0; k < n_thr && st == PT_OK; k++) {
        bo_stats r[2];
        size_t n = 0;
        int n_t = 0;
        st = bench_threads(be, &cfg, thread_list[k], steps, warmup, rounds, times, r, &n, &n_t);
        if (st != PT_OK)
            break;
        if (k == 0) { /* after the first run, so that a backend with no device prints its one line only */
            fprintf(tab, "bench optim: %s on %s, %d round(s) x %d step(s) per path after %d warm-up step(s)\n",
                    model, be->name, rounds, steps, warmup);
            fprintf(tab, "%-4s %-13s %8s %10s %10s %8s %8s\n", "thr", "path", "tensors", "median ms", "best ms",
                    "GB/s", "calls");
        }
        static const char *const names[2] = { "per_tensor", "multi_tensor" };
        for (int path = 0; path < 2; path++) {
            double gbs = 28.0 * (double)n / (r[path].median_ms * 1e-3) / 1e9;
            if (json)
                printf("{\"bench\":\"optim\",\"model\":\"%s\",\"backend\":\"%s\",\"threads\":%d,\"path\":\"%s\","
                       "\"tensors\":%d,\"elements\":%zu,\"backend_calls\":%d,\"rounds\":%d,\"steps\":%d,"
                       "\"median_ms\":%.4f,\"min_ms\":%.4f,\"GB_per_s\":%.2f}\n",
                       model, be->name, thread_list[k], names[path], n_t, n, path ? 1 : n_t, rounds, steps,
                       r[path].median_ms, r[path].min_ms, gbs);
            fprintf(tab, "%-4d %-13s %8d %10.3f %10.3f %8.2f %8d\n", thread_list[k], names[path], n_t,
                    r[path].median_ms, r[path].min_ms, gbs, path ? 1 : n_t);
        }
        double ratio = r[0].median_ms / r[1].median_ms, ratio_min = r[0].min_ms / r[1].min_ms;
        if (json)
            printf("{\"bench\":\"optim\",\"model\":\"%s\",\"backend\":\"%s\",\"threads\":%d,\"path\":\"ratio\","
                   "\"per_tensor_over_multi_median\":%.4f,\"per_tensor_over_multi_min\":%.4f}\n",
                   model, be->name, thread_list[k], ratio, ratio_min);
        fprintf(tab, "     per-tensor / multi-tensor: %.3f (median), %.3f (best)\n", ratio, ratio_min);
        fflush(stdout);
    }
    free(times);
    return pt_cli_finish(st);
}
