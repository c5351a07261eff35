/* `pipetrain bench sample`: text generation speed with the KV cache (models/generate.c), on the CPU
 * (or --backend cuda).
 *
 * Per model shape and thread count: random weights (seed 1) and a random prompt, then
 *   prefill  the prompt in one forward pass (its last position's logits included): prompt tokens/s
 *   decode   max-new - 1 one-token passes against the cache, plus sampling: new tokens/s
 *   no-cache what decoding costs without the cache, each new token a full forward over the whole
 *            sequence so far (8 tokens at the end of the sequence): tokens/s
 * Each figure is the median of --reps runs. Greedy sampling (the sampler costs the same order of
 * time at any temperature; top-k / top-p add a sort of the candidates).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/generate.h"
#include "pipetrain/model.h"
#include "pipetrain/timeutil.h"

typedef struct sample_shape {
    const char *model;
    int prompt, new_tokens;
} sample_shape;

static const sample_shape sample_shapes[] = {
    { "gpt2-tiny", 64, 128 },
    { "gpt2-small", 64, 128 },
};

typedef struct sample_result {
    double prefill_tps, decode_tps, nocache_tps, ms_per_token;
} sample_result;

static pt_status bench_one(const char *backend, const sample_shape *sh, int threads, int reps, int nocache,
                           sample_result *r)
{
    const pt_backend *be;
    pt_stream *s = NULL;
    pt_model *m = NULL;
    pt_generator *g = NULL;
    pt_sampler *smp = NULL;
    pt_model_config cfg;
    pt_status st;
    int32_t *prompt = NULL, *out = NULL, *seq = NULL;
    float *logits = NULL;
    double *pre = NULL, *dec = NULL;
    PT_CHECK(pt_model_config_load(sh->model, &cfg));
    PT_CHECK(pt_backend_get(backend, &be));
    PT_CHECK(be->stream_create(&(pt_stream_opts){ .n_threads = threads }, &s));
    const int P = sh->prompt, N = sh->new_tokens, T = P + N;
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 1, .n_slots = 1, .fused_only = 1 };
    PT_TRY(pt_model_create(&cfg, 0, pt_model_n_layers(&cfg) - 1, &mo, be, s, &m), done);
    PT_TRY(pt_model_init_weights(m, 1), done);
    PT_TRY(pt_generator_create(m, 1, T, &g), done);
    PT_TRY(pt_sampler_create(&(pt_sample_opts){ .temperature = 0 }, cfg.vocab_size, &smp), done);
    prompt = malloc((size_t)P * 4);
    out = malloc((size_t)N * 4);
    seq = malloc((size_t)T * 4);
    logits = malloc((size_t)cfg.vocab_size * 4);
    pre = malloc((size_t)(reps + 1) * sizeof *pre);
    dec = malloc((size_t)(reps + 1) * sizeof *dec);
    if (!prompt || !out || !seq || !logits || !pre || !dec) {
        st = pt_fail(PT_ENOMEM, "out of memory");
        goto done;
    }
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < P; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        prompt[i] = (int32_t)(x % (uint64_t)cfg.vocab_size);
    }
    pt_generate_stats gs;
    PT_TRY(pt_generate(g, smp, prompt, P, 8, out, NULL, NULL, &gs), done); /* warm-up */
    for (int k = 0; k < reps; k++) {
        PT_TRY(pt_generate(g, smp, prompt, P, N, out, NULL, NULL, &gs), done);
        pre[k] = P / gs.prefill_s;
        dec[k] = (N - 1) / gs.decode_s;
    }
    r->prefill_tps = pt_cli_median(pre, (size_t)reps);
    r->decode_tps = pt_cli_median(dec, (size_t)reps);
    r->ms_per_token = 1e3 / r->decode_tps;
    r->nocache_tps = 0;
    if (nocache) { /* the last 8 tokens, each one a full forward over the sequence before it */
        memcpy(seq, prompt, (size_t)P * 4);
        memcpy(seq + P, out, (size_t)N * 4);
        const int K = N < 8 ? N : 8;
        int64_t t0 = pt_now_ns();
        for (int k = 0; k < K; k++) {
            pt_generator_reset(g);
            PT_TRY(pt_generator_forward(g, seq, NULL, T - K + k, logits), done);
            (void)pt_sampler_next(smp, logits);
        }
        r->nocache_tps = K / pt_seconds_between(t0, pt_now_ns());
    }
    st = PT_OK;
done:
    free(prompt), free(out), free(seq), free(logits), free(pre), free(dec);
    pt_sampler_destroy(smp);
    pt_generator_destroy(g);
    pt_model_destroy(m);
    be->stream_destroy(s);
    return st;
}

int pt_bench_sample(int argc, char **argv)
{
    int json = 0, threads = 0, reps = 3, prompt = 0, new_tokens = 0, no_nocache = 0;
    const char *only = NULL, *backend = "cpu";
    pt_opt opts[] = {
        { "backend", PT_OPT_STRING, &backend, "cpu|cuda", "kernel backend (threads do not apply to cuda)", 0 },
        { "json", PT_OPT_FLAG, &json, NULL, "one JSON object per configuration", 0 },
        { "threads", PT_OPT_INT, &threads, "N", "CPU threads (0: 1 and 2, each)", 0 },
        { "reps", PT_OPT_INT, &reps, "N", "timed generations per configuration (the median is reported)", 0 },
        { "model", PT_OPT_STRING, &only, "NAME", "only this model (gpt2-tiny, gpt2-small; any preset with --prompt)", 0 },
        { "prompt-tokens", PT_OPT_INT, &prompt, "N", "prompt tokens (default: 64)", 0, "prompt" },
        { "max-new-tokens", PT_OPT_INT, &new_tokens, "N", "new tokens per generation, as sample's (default: 128)", 0,
          "new" },
        { "no-nocache", PT_OPT_FLAG, &no_nocache, NULL, "skip the no-cache comparison", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain bench sample [--json] [--threads N] [--model NAME] [--prompt-tokens N] [--max-new-tokens N]",
        "Generation speed on the CPU with the KV cache: gpt2-tiny and gpt2-small with random weights, a\n"
        "64-token prompt and 128 new tokens (greedy), on 1 and 2 threads. Reports prefill (prompt tokens/s),\n"
        "decode (new tokens/s, ms per token) and, for comparison, decoding without the cache (a full\n"
        "forward over the sequence for each new token).",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "example: pipetrain bench sample --json --model gpt2-small --threads 2",
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (reps < 1 || threads < 0 || prompt < 0 || new_tokens < 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--reps must be >= 1; --threads, --prompt-tokens and --max-new-tokens >= 0"));
    int thread_list[2] = { 1, 2 }, n_thr = 2;
    if (strcmp(backend, "cpu") != 0)
        n_thr = 1; /* one run: the thread count is the CPU backend's */
    if (threads > 0) {
        thread_list[0] = threads;
        n_thr = 1;
    }
    if (!json)
        printf("%-11s %6s %4s %3s %12s %12s %9s %13s\n", "model", "prompt", "new", "thr", "prefill t/s", "decode t/s",
               "ms/token", "no-cache t/s");
    const size_t n_shapes = sizeof sample_shapes / sizeof sample_shapes[0];
    int matched = 0;
    for (size_t i = 0; i < n_shapes + 1 && st == PT_OK; i++) {
        sample_shape sh;
        if (i < n_shapes) {
            sh = sample_shapes[i];
            if (only && strcmp(only, sh.model) != 0)
                continue;
        } else { /* a preset outside the list */
            if (!only || matched)
                break;
            sh = (sample_shape){ only, 64, 128 };
        }
        matched = 1;
        if (prompt > 0)
            sh.prompt = prompt;
        if (new_tokens > 0)
            sh.new_tokens = new_tokens;
        for (int k = 0; k < n_thr && st == PT_OK; k++) {
            sample_result r = { 0 };
            st = bench_one(backend, &sh, thread_list[k], reps, !no_nocache, &r);
            if (st != PT_OK)
                break;
            if (json) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "bench", "sample");
                cJSON_AddStringToObject(o, "backend", backend);
                cJSON_AddStringToObject(o, "model", sh.model);
                cJSON_AddNumberToObject(o, "prompt_tokens", sh.prompt);
                cJSON_AddNumberToObject(o, "new_tokens", sh.new_tokens);
                cJSON_AddNumberToObject(o, "threads", thread_list[k]);
                cJSON_AddNumberToObject(o, "reps", reps);
                cJSON_AddNumberToObject(o, "prefill_tokens_per_s", r.prefill_tps);
                cJSON_AddNumberToObject(o, "decode_tokens_per_s", r.decode_tps);
                cJSON_AddNumberToObject(o, "decode_ms_per_token", r.ms_per_token);
                if (!no_nocache)
                    cJSON_AddNumberToObject(o, "nocache_tokens_per_s", r.nocache_tps);
                char *line = cJSON_PrintUnformatted(o);
                if (line)
                    printf("%s\n", line);
                free(line);
                cJSON_Delete(o);
            } else {
                printf("%-11s %6d %4d %3d %12.0f %12.1f %9.2f %13.1f\n", sh.model, sh.prompt, sh.new_tokens,
                       thread_list[k], r.prefill_tps, r.decode_tps, r.ms_per_token, r.nocache_tps);
            }
            fflush(stdout);
        }
    }
    return pt_cli_finish(st);
}
