/* `pipetrain profile-layers`: times each layer's forward, backward-input and backward-weight on
 * the real backend (one layer per pt_model, one micro-batch) and writes a cost file that
 * `pipetrain plan --layer-costs FILE` uses in place of the analytic model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/backend.h"
#include "pipetrain/model.h"
#include "pipetrain/partition.h"
#include "pipetrain/timeutil.h"

/* Fills a (n) host buffer with small values from a fixed generator. */
static void fill_floats(float *x, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 0.2f;
    }
}

/* Times layer l: reps repetitions after one warm-up; medians into fwd/bi/bw. */
static pt_status profile_layer(const pt_model_config *cfg, int l, int B, int T, int reps, const pt_backend *be,
                               pt_stream *stream, double *fwd, double *bi, double *bw)
{
    const size_t N = (size_t)B * T, C = (size_t)cfg->n_embd;
    const int n_layers = pt_model_n_layers(cfg);
    /* floats per token at the layer's input and output: C, or C + PT_XENT_STATS between head shards */
    const size_t w_in = l > 0 ? (size_t)pt_model_boundary_width(cfg, l) : C;
    const size_t w_out = l + 1 < n_layers ? (size_t)pt_model_boundary_width(cfg, l + 1) : C;
    const size_t w_max = w_in > w_out ? w_in : w_out;
    pt_model_opts o = { .micro_batch = B, .seq_len = T, .n_slots = 1, .recompute = 0 };
    pt_model *m = NULL;
    pt_status st = PT_OK;
    double *t = calloc((size_t)reps * 3, sizeof(double));
    float *hf = malloc(N * w_max * sizeof(float));
    int32_t *hi = malloc(N * sizeof(int32_t));
    if (!t || !hf || !hi) {
        st = pt_fail(PT_ENOMEM, "out of host memory profiling layer %d", l);
        goto done;
    }
    PT_TRY(pt_model_create(cfg, l, l, &o, be, stream, &m), done);
    PT_TRY(pt_model_init_weights(m, 1234), done);
    PT_TRY(pt_model_zero_grads(m), done);
    for (size_t i = 0; i < N; i++)
        hi[i] = (int32_t)((i * 2654435761u) % (uint32_t)cfg->vocab_size);
    if (pt_model_has_embedding(m)) {
        PT_TRY(be->memcpy_h2d(stream, pt_model_slot_tokens(m, 0), hi, N * sizeof(int32_t)), done);
    } else {
        fill_floats(hf, N * C, 7u + (uint32_t)l);
        if (w_in > C) {
            /* a later head shard's input is h then the running statistics of the shards before it
             * (backend.h, xent_shard_forward): as if they had one column, of logit 0, not the
             * target: max 0, sum exp(0) = 1, target logit 0, best valid logit and column unset */
            static const float stats[PT_XENT_STATS] = { 0.0f, 1.0f, 0.0f, -1e30f, -1.0f };
            for (size_t i = 0; i < N; i++)
                for (size_t k = 0; k < PT_XENT_STATS; k++)
                    hf[N * C + k * N + i] = stats[k];
        }
        PT_TRY(be->memcpy_h2d(stream, pt_model_slot_input(m, 0), hf, N * w_in * sizeof(float)), done);
    }
    for (int r = -1; r < reps; r++) {
        /* the targets (every layer of the head), and the gradient arriving from the next stage */
        if (pt_model_slot_targets(m, 0))
            PT_TRY(be->memcpy_h2d(stream, pt_model_slot_targets(m, 0), hi, N * sizeof(int32_t)), done);
        if (!pt_model_has_head(m)) {
            fill_floats(hf, N * C, 99u + (uint32_t)l);
            if (w_out > C) {
                /* into a head shard's output comes dh, then the log-sum-exp of the whole row (any
                 * finite value: log Vp, as for uniform logits), then zeros */
                const float lse = logf((float)(cfg->vocab_padded > 0 ? cfg->vocab_padded : cfg->vocab_size));
                for (size_t i = 0; i < N; i++)
                    hf[N * C + i] = lse;
                memset(hf + N * C + N, 0, N * (w_out - C - 1) * sizeof(float));
            }
            PT_TRY(be->memcpy_h2d(stream, pt_model_slot_doutput(m, 0), hf, N * w_out * sizeof(float)), done);
        }
        PT_TRY(be->stream_sync(stream), done);
        int64_t t0 = pt_now_ns();
        PT_TRY(pt_model_forward(m, 0), done);
        PT_TRY(be->stream_sync(stream), done);
        int64_t t1 = pt_now_ns();
        PT_TRY(pt_model_backward_input(m, 0, 1.0f / (float)N), done);
        PT_TRY(be->stream_sync(stream), done);
        int64_t t2 = pt_now_ns();
        PT_TRY(pt_model_backward_weight(m, 0), done);
        PT_TRY(be->stream_sync(stream), done);
        int64_t t3 = pt_now_ns();
        if (r >= 0) { /* r = -1 is the warm-up */
            t[r] = (double)(t1 - t0) * 1e-9;
            t[reps + r] = (double)(t2 - t1) * 1e-9;
            t[2 * reps + r] = (double)(t3 - t2) * 1e-9;
        }
    }
    *fwd = pt_cli_median(t, (size_t)reps);
    *bi = pt_cli_median(t + reps, (size_t)reps);
    *bw = pt_cli_median(t + 2 * (size_t)reps, (size_t)reps);
done:
    pt_model_destroy(m);
    free(hi);
    free(hf);
    free(t);
    return st;
}

int pt_cmd_profile_layers(int argc, char **argv)
{
    const char *model = "gpt2-tiny", *output = NULL, *backend = "cpu";
    int B = 4, T = 0, threads = 0, reps = 5, head_split = 0;
    pt_opt opts[] = {
        { "model", PT_OPT_STRING, &model, "NAME|FILE", "preset or JSON config", 0 },
        { "micro-batch-size", PT_OPT_INT, &B, "B", "sequences per micro-batch", 0 },
        { "seq-len", PT_OPT_INT, &T, "T", "tokens per sequence (default the model's context)", 0 },
        { "threads", PT_OPT_INT, &threads, "N", "CPU threads (default all cores)", 0 },
        { "reps", PT_OPT_INT, &reps, "N", "timed repetitions per layer (the median is kept)", 0 },
        { "head-split", PT_OPT_INT, &head_split, "K",
          "time the LM head as K vocabulary-shard layers, for pipetrain plan --head-split K; 0: the config "
          "file's, 1 unless it says",
          0 },
        { "backend", PT_OPT_STRING, &backend, "cpu|cuda", "kernel backend", 0 },
        { "output", PT_OPT_STRING, &output, "FILE", "cost file to write (JSON)", 0 },
    };
    pt_cmd_spec spec = { "pipetrain profile-layers --model NAME --micro-batch-size B --seq-len T [--threads N] "
                         "[--head-split K] --output FILE",
                         "Time each layer's forward, backward-input and backward-weight on this machine and write a "
                         "cost file for pipetrain plan --layer-costs (and train --layer-costs).",
                         opts, (int)(sizeof opts / sizeof opts[0]),
                         "example:\n  pipetrain profile-layers --model gpt2-small --micro-batch-size 4 --seq-len 256 "
                         "--output costs.json\n  pipetrain plan --model gpt2-small --gpus 2 --layer-costs costs.json" };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (!output)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--output FILE is required (where the cost file goes)"));
    if (B < 1 || reps < 1 || reps > 1000)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--micro-batch-size must be >= 1 and --reps in 1..1000"));
    pt_model_config cfg;
    const pt_backend *be = NULL;
    pt_stream *stream = NULL;
    pt_layer_times *lt = NULL;
    PT_TRY(pt_model_config_load(model, &cfg), out);
    PT_TRY(pt_model_config_set_head_split(&cfg, head_split), out); /* 0: the config's own */
    if (T <= 0)
        T = cfg.max_seq_len;
    if (T > cfg.max_seq_len) {
        st = pt_fail(PT_EINVAL, "--seq-len %d exceeds %s's context of %d", T, cfg.name, cfg.max_seq_len);
        goto out;
    }
    PT_TRY(pt_backend_get(backend, &be), out);
    PT_TRY(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = threads }, &stream), out);
    const int L = pt_model_n_layers(&cfg);
    PT_TRY(pt_layer_times_create(L, &lt), out);
    lt->cfg = cfg;
    lt->micro_batch_size = B;
    lt->seq_len = T;
    lt->n_threads = threads;
    snprintf(lt->backend, sizeof lt->backend, "%s", be->name);
    printf("profiling %s, %d layers, micro-batch %d x %d on %s (%d reps)\n", cfg.name, L, B, T, be->name, reps);
    printf("  %-6s %-9s %12s %12s %12s\n", "layer", "kind", "forward", "bwd-input", "bwd-weight");
    for (int l = 0; l < L; l++) {
        /* Blocks are identical: time the first one and reuse it, unless there are few. */
        const int is_block = l >= 1 && l <= cfg.n_layer;
        if (is_block && l > 1 && cfg.n_layer > 4) {
            lt->fwd_s[l] = lt->fwd_s[1];
            lt->bwd_input_s[l] = lt->bwd_input_s[1];
            lt->bwd_weight_s[l] = lt->bwd_weight_s[1];
            continue;
        }
        PT_TRY(profile_layer(&cfg, l, B, T, reps, be, stream, &lt->fwd_s[l], &lt->bwd_input_s[l], &lt->bwd_weight_s[l]),
               out);
        char kind[32];
        if (l == 0 || is_block || pt_model_head_layers(&cfg) == 1)
            snprintf(kind, sizeof kind, "%s", l == 0 ? "embed" : is_block ? "block" : "head");
        else
            snprintf(kind, sizeof kind, "head %d/%d", l - cfg.n_layer, pt_model_head_layers(&cfg));
        printf("  %-6d %-9s %9.3f ms %9.3f ms %9.3f ms\n", l, kind, lt->fwd_s[l] * 1e3, lt->bwd_input_s[l] * 1e3,
               lt->bwd_weight_s[l] * 1e3);
    }
    if (cfg.n_layer > 4)
        printf("  (blocks 2..%d share block 1's times: every block has the same shapes)\n", cfg.n_layer);
    PT_TRY(pt_layer_times_save(lt, output), out);
    printf("wrote %s\n", output);
out:
    pt_layer_times_destroy(lt);
    if (be && stream)
        be->stream_destroy(stream);
    return pt_cli_finish(st);
}
