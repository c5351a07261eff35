/* `pipetrain sample`: generates text from a checkpoint (GPT-2 or Llama), a Hugging Face GPT-2
 * safetensors file or a Hugging Face Llama directory with
 * the KV cache (include/pipetrain/generate.h), streaming it to stdout; one line of counts and
 * tokens/s goes to stderr at the end. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/comm.h"
#include "pipetrain/generate.h"
#include "pipetrain/model.h"
#include "pipetrain/safetensors.h"
#include "pipetrain/schedule.h"
#include "pipetrain/timeutil.h"
#include "pipetrain/tokenizer.h"

/* What a checkpoint's run description says: the model config (--model wins) and the tokenizer its
 * data were made with ("data_tokenizer" and "data_tokenizer_fingerprint", pt_dataset_describe; tok
 * "" and *fp 0 when it records none; data: its "data" or ""). */
static pt_status ckpt_info(const char *run_json, const char *model_opt, pt_model_config *cfg, char *tok, size_t tok_cap,
                           uint64_t *fp, char *data, size_t data_cap)
{
    tok[0] = data[0] = 0;
    *fp = 0;
    pt_status st = pt_ckpt_run_model_config(run_json, model_opt, cfg);
    cJSON *run = cJSON_Parse(run_json ? run_json : "{}");
    const cJSON *tj = run ? cJSON_GetObjectItemCaseSensitive(run, "data_tokenizer") : NULL;
    if (cJSON_IsString(tj))
        snprintf(tok, tok_cap, "%s", tj->valuestring);
    const cJSON *fj = run ? cJSON_GetObjectItemCaseSensitive(run, "data_tokenizer_fingerprint") : NULL;
    if (cJSON_IsString(fj))
        *fp = strtoull(fj->valuestring, NULL, 16);
    const cJSON *dj = run ? cJSON_GetObjectItemCaseSensitive(run, "data") : NULL;
    if (cJSON_IsString(dj))
        snprintf(data, data_cap, "%s", dj->valuestring);
    cJSON_Delete(run);
    return st;
}

/* A Hugging Face model's tokenizer file beside its weights: in the folder `init_from` names (or the
 * folder of the file it names), tokenizer.json, else tokenizer.model (a tiktoken rank file, Llama 3),
 * else original/tokenizer.model. Returns 1 with the path in out, 0 when there is none. */
static int hf_tokenizer_beside(const char *init_from, char *out, size_t cap)
{
    char dir[PATH_MAX];
    struct stat sb;
    snprintf(dir, sizeof dir, "%s", init_from);
    if (stat(init_from, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
    }
    static const char *const names[] = { "tokenizer.json", "tokenizer.model", "original/tokenizer.model" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int n = snprintf(out, cap, "%s/%s", dir, names[i]);
        if (n > 0 && (size_t)n < cap && stat(out, &sb) == 0 && S_ISREG(sb.st_mode))
            return 1;
    }
    return 0;
}

/* Appends one id to ids (grown). */
static pt_status push_id(pt_tok_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *n = realloc(ids->ids, cap * sizeof(int32_t));
        if (!n)
            return pt_fail(PT_ENOMEM, "out of memory");
        ids->ids = n;
        ids->cap = cap;
    }
    ids->ids[ids->n++] = id;
    return PT_OK;
}

/* Parses whitespace-separated ids into ids (grown). */
static pt_status parse_ids(const char *text, pt_tok_ids *ids)
{
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',')
            p++;
        if (!*p)
            return PT_OK;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX)
            return pt_fail(PT_EINVAL, "--prompt-ids: '%.20s' is not a token id; give ids separated by spaces", p);
        PT_CHECK(push_id(ids, (int32_t)v));
        p = end;
    }
}

/* The ids of a text prompt (sample --prompt, train --sample-prompt), appended to ids: a llama
 * model's prompt starts with the tokenizer's <|begin_of_text|> when it has one (Llama 3's
 * tokenizer.json adds it in its post-processor, which pt_tokenizer_encode does not run; once: a
 * prompt that encodes it itself keeps its own), unless no_bos; then the text; "" is the
 * end-of-text token (or just <|begin_of_text|>). Nothing at all for "" with a tokenizer that has
 * neither (the caller refuses an empty prompt). */
static pt_status encode_prompt(const pt_tokenizer *tok, const pt_model_config *cfg, const char *text, int flags,
                               int no_bos, pt_tok_ids *ids)
{
    const int bos = !no_bos && cfg->arch == PT_ARCH_LLAMA ? pt_tokenizer_special_id(tok, "<|begin_of_text|>") : -1;
    const int with_bos = bos >= 0 && bos < cfg->vocab_size;
    const size_t at = ids->n;
    if (with_bos)
        PT_CHECK(push_id(ids, bos));
    if (text[0]) {
        PT_CHECK(pt_tokenizer_encode(tok, text, strlen(text), flags, ids));
        if (with_bos && ids->n > at + 1 && ids->ids[at + 1] == bos) { /* the text's own <|begin_of_text|> */
            memmove(ids->ids + at, ids->ids + at + 1, (ids->n - at - 1) * sizeof(int32_t));
            ids->n--;
        }
    } else if (!with_bos && pt_tokenizer_eot(tok) >= 0) {
        PT_CHECK(push_id(ids, pt_tokenizer_eot(tok)));
    }
    return PT_OK;
}

typedef struct {
    const pt_tokenizer *tok; /* NULL with --ids */
    FILE *f;
    int first;
    int32_t stop_id; /* the end-of-text id generation stops at (not printed as text); -1: none */
} stream_ctx;

/* pt_generate_fn: prints the token (its id with --ids, else its bytes, except the end-of-text token)
 * and asks to stop at the end-of-text token. */
static int on_token(void *ctx, const int32_t *ids, int step)
{
    stream_ctx *c = ctx;
    (void)step;
    const int stop = c->stop_id >= 0 && ids[0] == c->stop_id;
    if (!c->tok) {
        fprintf(c->f, "%s%d", c->first ? "" : " ", ids[0]);
    } else if (!stop) {
        size_t len = 0;
        const char *b = pt_tokenizer_token(c->tok, ids[0], &len);
        if (b)
            fwrite(b, 1, len, c->f);
    }
    c->first = 0;
    fflush(c->f);
    return stop;
}

/* ---- generation through a pipeline: one rank per layer range (sample --stages, train --sample-every) ---- */

/* One rank's part of the generation loop over stages 0..P-1 (world ranks 0..P-1 of comm; this is
 * stage r; P 1 runs alone). Forward k (k = 0: the prompt, then token k-1) runs stage 0 .. P-1, each
 * sending the new positions' hidden state (n x C floats and one stop flag) to the next; stage P-1
 * samples token k and sends it to stage 0, which stores it in out[k], calls fn (as pt_generate
 * does) and starts forward k+1 — or, when fn asks to stop (the end-of-text token), sends the stop
 * flag instead, which every stage passes on and ends at. Every wait has the comm's timeout.
 * Messages use kinds FORWARD / BACKWARD, which training's sends never use. stats (stage 0's
 * timings, every stage's count) may be NULL. */
static pt_status pipe_generate(pt_comm *c, int r, int P, pt_generator *g, pt_sampler *smp, const int32_t *prompt,
                               int n_prompt, int max_new, int C, int V, int32_t *out, pt_generate_fn fn, void *ctx,
                               pt_generate_stats *stats)
{
    const int last = P - 1;
    float *h = malloc(((size_t)n_prompt * C + 1) * sizeof(float)), *logits = malloc((size_t)V * sizeof(float));
    if (!h || !logits) {
        free(h);
        free(logits);
        return pt_fail(PT_ENOMEM, "out of memory for the stage's hidden state");
    }
    pt_status st = PT_OK;
    int32_t tok = 0;
    int k = 0, stopped = 0;
    int64_t t0 = pt_now_ns(), t1 = t0;
    pt_generator_reset(g);
    for (; k < max_new && !stopped; k++) {
        const int n = k == 0 ? n_prompt : 1;
        const size_t hbytes = ((size_t)n * C + 1) * sizeof(float);
        const int64_t dl = c ? pt_deadline_after_ms(pt_comm_timeout_ms(c)) : 0;
        pt_msg_id act = { PT_ACT_FORWARD, 0, 0, k }, back = { PT_ACT_BACKWARD, 0, 0, k };
        pt_comm_req *req = NULL;
        if (r > 0) {
            PT_TRY(pt_comm_irecv(c, r - 1, &act, h, hbytes, &req), done);
            PT_TRY(pt_comm_wait(c, req, dl), done);
            if (h[(size_t)n * C] != 0.0f) { /* stage 0 stopped: pass it on and end */
                if (r < last) {
                    PT_TRY(pt_comm_isend(c, r + 1, &act, h, hbytes, &req), done);
                    PT_TRY(pt_comm_wait(c, req, dl), done);
                }
                break;
            }
        }
        if (r < last) {
            PT_TRY(pt_generator_forward(g, k == 0 ? prompt : &tok, r > 0 ? h : NULL, n, h), done);
            h[(size_t)n * C] = 0.0f;
            PT_TRY(pt_comm_isend(c, r + 1, &act, h, hbytes, &req), done);
            PT_TRY(pt_comm_wait(c, req, dl), done);
        } else {
            PT_TRY(pt_generator_forward(g, r == 0 ? (k == 0 ? prompt : &tok) : NULL, r > 0 ? h : NULL, n, logits),
                   done);
            tok = pt_sampler_next(smp, logits);
            if (r > 0) {
                PT_TRY(pt_comm_isend(c, 0, &back, &tok, sizeof tok, &req), done);
                PT_TRY(pt_comm_wait(c, req, dl), done);
            }
        }
        if (r == 0) {
            if (last > 0) {
                PT_TRY(pt_comm_irecv(c, last, &back, &tok, sizeof tok, &req), done);
                PT_TRY(pt_comm_wait(c, req, dl), done);
            }
            if (tok < 0 || tok >= V) {
                st = pt_fail(PT_ECOMM, "rank %d sent token %d, outside the vocabulary", last, tok);
                goto done;
            }
            out[k] = tok;
            if (k == 0)
                t1 = pt_now_ns();
            if (fn && fn(ctx, &tok, k)) {
                stopped = 1;
                if (last > 0 && k + 1 < max_new) { /* the others wait for forward k+1: tell them */
                    pt_msg_id next = { PT_ACT_FORWARD, 0, 0, k + 1 };
                    h[C] = 1.0f;
                    PT_TRY(pt_comm_isend(c, 1, &next, h, ((size_t)C + 1) * sizeof(float), &req), done);
                    PT_TRY(pt_comm_wait(c, req, dl), done);
                }
            }
        }
    }
done:
    if (stats) {
        stats->n_prompt = n_prompt;
        stats->n_new = k;
        stats->prefill_s = pt_seconds_between(t0, t1);
        stats->decode_s = pt_seconds_between(t1, pt_now_ns());
    }
    free(h);
    free(logits);
    return st;
}

/* ---- --stages P: one rank per stage (forward only), the new token's hidden state rank to rank ---- */

/* The output descriptors of the launching process, which the ranks inherit, so that rank 0 streams
 * the text straight to the user's terminal (not through the launcher's "[rank R] " line copies). */
#define SAMPLE_OUT_FD_ENV "PT_SAMPLE_OUT_FD"
#define SAMPLE_ERR_FD_ENV "PT_SAMPLE_ERR_FD"

/* Starts `stages` local ranks of this same command. */
static pt_status launch_stages(int argc, char **argv, int stages)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return pt_fail(PT_EIO, "cannot find this program's path (/proc/self/exe) to start the ranks");
    exe[n] = '\0';
    char **av = calloc((size_t)argc + 2, sizeof *av);
    if (!av)
        return pt_fail(PT_ENOMEM, "out of memory");
    av[0] = exe;
    for (int i = 0; i < argc; i++) /* "sample" and its options */
        av[i + 1] = argv[i];
    fflush(stdout);
    fflush(stderr);
    int out_fd = dup(1), err_fd = dup(2); /* dup leaves them open across exec */
    char buf[16];
    snprintf(buf, sizeof buf, "%d", out_fd);
    setenv(SAMPLE_OUT_FD_ENV, buf, 1);
    snprintf(buf, sizeof buf, "%d", err_fd);
    setenv(SAMPLE_ERR_FD_ENV, buf, 1);
    pt_launch_opts lo = { .nproc = stages, .nodes = 1, .node_rank = 0, .master = NULL };
    int code = 0;
    pt_status st = pt_launch(&lo, av, &code);
    close(out_fd);
    close(err_fd);
    free(av);
    if (st != PT_OK)
        return pt_fail(st, "sample --stages %d: a rank failed (exit %d); its error is above", stages, code);
    return PT_OK;
}

/* Stage r's layers: the n_layer + 2 layers (embedding, blocks, head) cut into `stages` contiguous
 * ranges of near-equal counts. */
static void stage_range(const pt_model_config *cfg, int stages, int r, int *first, int *last)
{
    const int n = pt_model_n_layers(cfg), base = n / stages, rem = n % stages;
    *first = r * base + (r < rem ? r : rem);
    *last = *first + base + (r < rem) - 1;
}

static FILE *inherited(const char *env, FILE *fallback)
{
    const char *v = getenv(env);
    FILE *f = v ? fdopen(atoi(v), "w") : NULL;
    return f ? f : fallback;
}

int pt_cmd_sample(int argc, char **argv)
{
    const char *ckpt = NULL, *init_from = NULL, *model = NULL, *prompt = NULL, *prompt_ids = NULL, *tok_opt = NULL;
    const char *backend = "cpu";
    int max_new = 64, top_k = 0, threads = 0, ids_out = 0, stages = 1, allow_special = 0, no_stop = 0, no_bos = 0;
    double temperature = 1.0, top_p = 1.0;
    long long seed = 0;
    pt_opt opts[] = {
        { "ckpt", PT_OPT_STRING, &ckpt, "DIR", "a checkpoint root or step directory (any stage layout)", 0 },
        { "init-from", PT_OPT_STRING, &init_from, "FILE|DIR",
          "Hugging Face weights instead: a GPT-2 safetensors file or a Llama model directory", 0 },
        { "model", PT_OPT_STRING, &model, "NAME|FILE",
          "model config (default: the checkpoint's, the file's metadata, or the preset its shapes match)", 0 },
        { "prompt", PT_OPT_STRING, &prompt, "TEXT",
          "text to continue (\"\": the end-of-text token, or llama's <|begin_of_text|>)", 0 },
        { "prompt-ids", PT_OPT_STRING, &prompt_ids, "IDS", "the prompt as token ids (\"464 2068 ...\") instead", 0 },
        { "tokenizer", PT_OPT_STRING, &tok_opt, "NAME|FILE",
          "byte, gpt2, cl100k, o200k or a file (default: the checkpoint's; byte for the built-in tasks, gpt2 for a "
          "50257-token model)", 0 },
        { "allow-special", PT_OPT_FLAG, &allow_special, NULL, "recognise special tokens (<|endoftext|>) in the prompt", 0 },
        { "max-new-tokens", PT_OPT_INT, &max_new, "N", "tokens to generate", 0 },
        { "temperature", PT_OPT_DOUBLE, &temperature, "T", "softmax temperature (0: greedy)", 0 },
        { "top-k", PT_OPT_INT, &top_k, "K", "sample among the K most likely tokens (0: all)", 0 },
        { "top-p", PT_OPT_DOUBLE, &top_p, "P", "nucleus: the fewest most likely tokens holding P of the mass (1: all)", 0 },
        { "seed", PT_OPT_INT64, &seed, "S", "seed of the draws (same seed, same text)", 0 },
        { "backend", PT_OPT_STRING, &backend, "cpu|cuda", "kernel backend", 0 },
        { "threads", PT_OPT_INT, &threads, "N", "CPU threads (0: all cores)", 0 },
        { "ids", PT_OPT_FLAG, &ids_out, NULL, "print the generated token ids instead of text", 0 },
        { "stages", PT_OPT_INT, &stages, "P", "pipeline stages to spread the model over (1: one process)", 0 },
        { "no-stop", PT_OPT_FLAG, &no_stop, NULL,
          "generate all --max-new-tokens even past the end-of-text token (default: stop there)", 0 },
        { "ignore-eot", PT_OPT_FLAG, &no_stop, NULL, "the same as --no-stop", 0 },
        { "no-bos", PT_OPT_FLAG, &no_bos, NULL,
          "llama: do not start a --prompt with the tokenizer's <|begin_of_text|> (as Hugging Face's tokenizer does)", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain sample --ckpt DIR | --init-from FILE.safetensors|DIR --prompt TEXT [options]",
        "Generates a continuation of the prompt with a KV cache (the prompt in one forward pass, then one token\n"
        "at a time), streaming the text to stdout; a last line on stderr gives the prompt and new token counts\n"
        "and the prefill and decode speeds. Greedy output (--temperature 0) equals the argmax of a full forward\n"
        "pass at every position. Generation stops at the tokenizer's end-of-text token (not printed as text;\n"
        "the last id with --ids) unless --no-stop. A Hugging Face Llama directory samples with the\n"
        "tokenizer.json (or tokenizer.model) beside its weights, and a Llama prompt starts with the\n"
        "tokenizer's <|begin_of_text|> when it has one, as Hugging Face's tokenizer encodes it.",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "examples:\n"
        "  pipetrain sample --ckpt runs/20261206-120000/ckpt --prompt 'sort:dcab=' --temperature 0\n"
        "  pipetrain sample --init-from gpt2.safetensors --prompt 'The meaning of life is' --top-k 40 --seed 1\n"
        "  pipetrain sample --init-from Llama-3.2-1B --prompt 'The capital of France is' --temperature 0 --stages 2",
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (!ckpt == !init_from)
        return pt_cli_finish(pt_fail(PT_EINVAL, "give one of --ckpt DIR or --init-from FILE.safetensors|DIR"));
    if (!prompt == !prompt_ids)
        return pt_cli_finish(pt_fail(PT_EINVAL, "give one of --prompt TEXT or --prompt-ids IDS"));
    if (max_new < 1)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--max-new-tokens is %d; give a number >= 1", max_new));
    if (seed < 0)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--seed is %lld; give a number >= 0", seed));
    if (stages < 1)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--stages is %d; give a number >= 1", stages));

    const pt_backend *be = NULL;
    pt_stream *stream = NULL;
    pt_model *m = NULL;
    pt_generator *g = NULL;
    pt_sampler *smp = NULL;
    pt_tokenizer *tok = NULL;
    pt_ckpt_manifest *man = NULL;
    pt_comm *comm = NULL;
    pt_train_state ts = { 0 };
    pt_tok_ids ids = { 0 };
    int32_t *gen = NULL;
    pt_model_config cfg;
    char step_dir[512], note[1024], rec_tok[600] = "", data[600] = "", hf_tok[PATH_MAX + 32];
    uint64_t rec_fp = 0;

    /* the model config and, for a checkpoint, the tokenizer it records */
    if (ckpt) {
        PT_TRY(pt_ckpt_resolve(ckpt, step_dir, sizeof step_dir, note, sizeof note), out);
        if (note[0])
            fprintf(stderr, "%s\n", note);
        PT_TRY(pt_ckpt_manifest_read(step_dir, &man), out);
        PT_TRY(ckpt_info(man->run_json, model, &cfg, rec_tok, sizeof rec_tok, &rec_fp, data, sizeof data), out);
    } else if (model) {
        PT_TRY(pt_model_config_load(model, &cfg), out);
    } else {
        PT_TRY(pt_model_config_from_safetensors(init_from, &cfg), out);
    }
    cfg.head_split = 0; /* generation reads the whole wte as the head; the parameters are the same */

    /* the tokenizer: the recorded one; --tokenizer must agree with it */
    const char *tok_name = tok_opt;
    if (!tok_name && rec_tok[0])
        tok_name = rec_tok;
    if (!tok_name && init_from && cfg.arch == PT_ARCH_LLAMA && hf_tokenizer_beside(init_from, hf_tok, sizeof hf_tok))
        tok_name = hf_tok; /* a Hugging Face Llama directory's own tokenizer */
    if (!tok_name) {
        if (strncmp(data, "builtin:", 8) == 0 || cfg.vocab_size <= 256)
            tok_name = "byte";
        else if (cfg.vocab_size == 50257)
            tok_name = "gpt2";
        else if (!ids_out || !prompt_ids) {
            st = pt_fail(PT_EINVAL, "%s records no tokenizer and its vocabulary (%d) is neither byte's nor GPT-2's; "
                                    "pass --tokenizer NAME|FILE",
                         ckpt ? ckpt : init_from, cfg.vocab_size);
            goto out;
        }
    }
    if (tok_name) {
        PT_TRY(pt_tokenizer_open(tok_name, &tok), out);
        if (tok_opt && rec_tok[0]) { /* fingerprints when the checkpoint records one, else names */
            int same = rec_fp ? pt_tokenizer_fingerprint(tok) == rec_fp
                              : strcmp(rec_tok, tok_opt) == 0 || strcmp(rec_tok, pt_tokenizer_name(tok)) == 0;
            if (!same) {
                st = pt_fail(PT_EINVAL, "--tokenizer %s differs from %s, which %s was trained with; leave --tokenizer "
                                        "out or pass --tokenizer %s",
                             tok_opt, rec_tok, ckpt, rec_tok);
                goto out;
            }
        }
        if (pt_tokenizer_vocab_size(tok) > cfg.vocab_size) {
            st = pt_fail(PT_EINVAL, "tokenizer %s has %d tokens but the model only %d; pass the --tokenizer the model "
                                    "was trained with",
                         pt_tokenizer_name(tok), pt_tokenizer_vocab_size(tok), cfg.vocab_size);
            goto out;
        }
    }

    /* the prompt */
    if (prompt_ids)
        PT_TRY(parse_ids(prompt_ids, &ids), out);
    else
        PT_TRY(encode_prompt(tok, &cfg, prompt, allow_special ? PT_TOK_ALLOW_SPECIAL : 0, no_bos, &ids), out);
    if (ids.n == 0) {
        st = pt_fail(PT_EINVAL, "the prompt is empty and tokenizer %s has no end-of-text token; give a --prompt",
                     pt_tokenizer_name(tok));
        goto out;
    }
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] >= cfg.vocab_size) {
            st = pt_fail(PT_EINVAL, "prompt token %d (at %zu) is outside the model's vocabulary of %d; check --tokenizer",
                         ids.ids[i], i, cfg.vocab_size);
            goto out;
        }
    if ((long)ids.n + max_new > cfg.max_seq_len) {
        if ((long)ids.n >= cfg.max_seq_len)
            st = pt_fail(PT_EINVAL, "the prompt is %zu tokens but the model's context is %d; shorten the prompt to at "
                                    "most %d tokens",
                         ids.n, cfg.max_seq_len, cfg.max_seq_len - 1);
        else
            st = pt_fail(PT_EINVAL, "the prompt (%zu tokens) + --max-new-tokens %d pass the model's context of %d; use "
                                    "--max-new-tokens %ld or a shorter prompt",
                         ids.n, max_new, cfg.max_seq_len, cfg.max_seq_len - (long)ids.n);
        goto out;
    }

    /* --stages P: this process launches P ranks of the same command, each of which holds a range */
    int in_job = 0, job_rank = 0, job_size = 1, first = 0, last = pt_model_n_layers(&cfg) - 1;
    PT_TRY(pt_comm_env_job(&in_job, &job_rank, &job_size), out);
    if (stages > pt_model_n_layers(&cfg)) {
        st = pt_fail(PT_EINVAL, "--stages %d: the model has only %d layers (embedding, %d blocks, head); use at most "
                                "--stages %d", stages, pt_model_n_layers(&cfg), cfg.n_layer, pt_model_n_layers(&cfg));
        goto out;
    }
    if (stages > 1 && !in_job) {
        st = launch_stages(argc, argv, stages);
        goto out;
    }
    if (in_job && job_size != stages) {
        st = pt_fail(PT_EINVAL, "sample --stages %d runs in a job of %d ranks; start it with one rank per stage",
                     stages, job_size);
        goto out;
    }
    if (stages > 1) {
        stage_range(&cfg, stages, job_rank, &first, &last);
        if (threads <= 0) {
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            threads = cores > stages ? (int)(cores / stages) : 1;
        }
    }

    /* the model (this stage's layers) and its weights */
    PT_TRY(pt_backend_get(backend, &be), out);
    PT_TRY(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = threads }, &stream), out);
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 1, .n_slots = 1, .fused_only = 1 };
    PT_TRY(pt_model_create(&cfg, first, last, &mo, be, stream, &m), out);
    if (ckpt)
        PT_TRY(pt_ckpt_load_ex(step_dir, &m, NULL, 1, &ts, NULL, NULL, NULL), out);
    else
        PT_TRY(pt_model_load_hf_safetensors(m, init_from), out);

    /* generate */
    pt_sample_opts so = { .temperature = (float)temperature, .top_k = top_k, .top_p = (float)top_p,
                          .seed = (uint64_t)seed };
    PT_TRY(pt_sampler_create(&so, cfg.vocab_size, &smp), out);
    PT_TRY(pt_generator_create(m, 1, (int)ids.n + max_new, &g), out);
    gen = malloc((size_t)max_new * sizeof(int32_t));
    if (!gen) {
        st = pt_fail(PT_ENOMEM, "out of memory");
        goto out;
    }
    const int32_t eot = tok ? pt_tokenizer_eot(tok) : -1;
    stream_ctx sc = { .tok = ids_out ? NULL : tok, .f = stdout, .first = 1, .stop_id = no_stop ? -1 : eot };
    FILE *err = stderr;
    if (stages > 1) {
        sc.f = inherited(SAMPLE_OUT_FD_ENV, stdout);
        err = inherited(SAMPLE_ERR_FD_ENV, stderr);
    }
    if (!ids_out && prompt && job_rank == 0) {
        fputs(prompt, sc.f);
        fflush(sc.f);
    }
    pt_generate_stats gs;
    if (stages > 1) {
        PT_TRY(pt_comm_create(&(pt_comm_opts){ .config_hash = (uint64_t)stages * 1000003u + (uint64_t)max_new },
                              &comm),
               out);
        st = pipe_generate(comm, job_rank, stages, g, smp, ids.ids, (int)ids.n, max_new, cfg.n_embd, cfg.vocab_size,
                           gen, on_token, &sc, &gs);
    } else {
        st = pt_generate(g, smp, ids.ids, (int)ids.n, max_new, gen, on_token, &sc, &gs);
    }
    if (job_rank != 0)
        goto out;
    fprintf(sc.f, "\n");
    fflush(sc.f);
    if (st == PT_OK) {
        char stages_s[32] = "", stop_s[96] = "";
        if (stages > 1)
            snprintf(stages_s, sizeof stages_s, ", %d stages", stages);
        if (sc.stop_id >= 0 && gs.n_new > 0 && gen[gs.n_new - 1] == sc.stop_id)
            snprintf(stop_s, sizeof stop_s, "; stopped at end-of-text after %d tokens", gs.n_new);
        fprintf(err, "sample: %d prompt tokens, %d new tokens; prefill %.1f tokens/s (%.1f ms), decode %.1f tokens/s "
                     "(%.1f ms), %s, %s%s%s\n",
                gs.n_prompt, gs.n_new, gs.prefill_s > 0 ? gs.n_prompt / gs.prefill_s : 0.0, gs.prefill_s * 1e3,
                gs.decode_s > 0 && gs.n_new > 1 ? (gs.n_new - 1) / gs.decode_s : 0.0, gs.decode_s * 1e3, be->name,
                temperature == 0 ? "greedy" : "sampled", stages_s, stop_s);
        fflush(err);
    }
out:
    pt_comm_destroy(comm);
    free(gen);
    free(ids.ids);
    free((char *)ts.run_json);
    pt_generator_destroy(g);
    pt_sampler_destroy(smp);
    pt_model_destroy(m);
    if (be && stream)
        be->stream_destroy(stream);
    pt_tokenizer_close(tok);
    pt_ckpt_manifest_destroy(man);
    return pt_cli_finish(st);
}

/* ---- train --sample-every N: a short sample from the model being trained (cli.h) ---- */

struct pt_train_sampler {
    pt_model *m;         /* borrowed: this rank's chunk (every layer in one process) */
    pt_comm *comm;       /* borrowed; NULL in one process */
    int stage, n_stages; /* this rank's pipeline stage of replica 0 (0 and 1 in one process) */
    pt_generator *g;
    pt_tokenizer *tok;
    pt_tok_ids prompt;
    int n_new;
    pt_sample_opts so;
    int32_t *out;
    int n_out;           /* ids in out from the last generate (stage 0) */
    int64_t step;        /* the step they are of; -1: none */
};

void pt_train_sampler_destroy(pt_train_sampler *s)
{
    if (!s)
        return;
    pt_generator_destroy(s->g);
    pt_tokenizer_close(s->tok);
    free(s->prompt.ids);
    free(s->out);
    free(s);
}

pt_status pt_train_sampler_create_stage(pt_model *m, pt_comm *comm, int stage, int n_stages, const char *tokenizer,
                                        const char *prompt, int n_new, double temperature, uint64_t seed,
                                        pt_train_sampler **out)
{
    *out = NULL;
    const pt_model_config *cfg = pt_model_config_of(m);
    if (n_new < 1)
        return pt_fail(PT_EINVAL, "--sample-tokens is %d; give a number >= 1", n_new);
    if (n_stages < 1 || stage < 0 || stage >= n_stages || (n_stages > 1 && !comm))
        return pt_fail(PT_EINVAL, "train sampler: stage %d of %d (with%s a comm)", stage, n_stages, comm ? "" : "out");
    pt_train_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return pt_fail(PT_ENOMEM, "out of memory");
    pt_status st;
    s->m = m;
    s->comm = n_stages > 1 ? comm : NULL;
    s->stage = stage;
    s->n_stages = n_stages;
    s->step = -1;
    s->so = (pt_sample_opts){ .temperature = (float)temperature, .seed = seed };
    PT_TRY(pt_tokenizer_open(tokenizer, &s->tok), fail);
    PT_TRY(encode_prompt(s->tok, cfg, prompt, 0, 0, &s->prompt), fail);
    if (s->prompt.n == 0 || (int)s->prompt.n >= cfg->max_seq_len) {
        st = pt_fail(PT_EINVAL, "--sample-prompt is %zu tokens; give a prompt of 1 to %d tokens (\"\" means the "
                                "end-of-text token, which %s lacks)",
                     s->prompt.n, cfg->max_seq_len - 1, pt_tokenizer_name(s->tok));
        goto fail;
    }
    s->n_new = n_new < cfg->max_seq_len - (int)s->prompt.n ? n_new : cfg->max_seq_len - (int)s->prompt.n;
    s->out = malloc((size_t)s->n_new * sizeof(int32_t));
    if (!s->out) {
        st = pt_fail(PT_ENOMEM, "out of memory");
        goto fail;
    }
    PT_TRY(pt_generator_create(m, 1, (int)s->prompt.n + s->n_new, &s->g), fail);
    *out = s;
    return PT_OK;
fail:
    pt_train_sampler_destroy(s);
    return st;
}

/* pt_generate_fn of the samples: stop at the end-of-text token. */
static int train_sample_stop(void *ctx, const int32_t *ids, int step)
{
    (void)step;
    const pt_tokenizer *t = ctx;
    return pt_tokenizer_eot(t) >= 0 && ids[0] == pt_tokenizer_eot(t);
}

pt_status pt_train_sampler_generate(pt_train_sampler *s, int64_t step)
{
    pt_sample_opts so = s->so;
    so.seed ^= (uint64_t)step * 0x9E3779B97F4A7C15ull; /* a different draw each time, the same for a step */
    pt_sampler *smp = NULL;
    const pt_model_config *cfg = pt_model_config_of(s->m);
    PT_CHECK(pt_sampler_create(&so, cfg->vocab_size, &smp));
    pt_generate_stats gs = { 0 };
    s->step = -1;
    pt_status st;
    if (s->n_stages == 1 && pt_model_has_embedding(s->m) && pt_model_has_head(s->m))
        st = pt_generate(s->g, smp, s->prompt.ids, (int)s->prompt.n, s->n_new, s->out, train_sample_stop, s->tok, &gs);
    else
        st = pipe_generate(s->comm, s->stage, s->n_stages, s->g, smp, s->prompt.ids, (int)s->prompt.n, s->n_new,
                           cfg->n_embd, cfg->vocab_size, s->out, train_sample_stop, s->tok, &gs);
    pt_sampler_destroy(smp);
    PT_CHECK(st);
    s->n_out = gs.n_new;
    s->step = step;
    return PT_OK;
}

pt_status pt_train_sampler_write(pt_train_sampler *s, int64_t step, FILE *f)
{
    if (s->stage != 0)
        return PT_OK;
    if (s->step != step)
        return pt_fail(PT_EINVAL, "train sampler: no sample of step %lld was generated", (long long)step);
    const int32_t eot = pt_tokenizer_eot(s->tok);
    const int stopped = eot >= 0 && s->n_out > 0 && s->out[s->n_out - 1] == eot;
    char *text = NULL;
    size_t len = 0;
    PT_CHECK(pt_tokenizer_decode(s->tok, s->out, (size_t)(s->n_out - stopped), &text, &len));
    fprintf(f, "sample at step %lld (%d tokens, %s%s):\n---\n", (long long)step, s->n_out,
            s->so.temperature == 0 ? "greedy" : "sampled", stopped ? ", stopped at end-of-text" : "");
    fwrite(text, 1, len, f);
    fprintf(f, "\n---\n");
    fflush(f);
    free(text);
    return PT_OK;
}
