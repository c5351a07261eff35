/* test_reference [--backend cpu|cuda] [FILE] — reproduces a PyTorch GPT-2 or Llama computation stored as safetensors
 * (default: tests/models/reference/gpt2-ref.safetensors; format in that folder's README; metadata
 * "model" is "gpt2" (or absent) or "llama"): imports the Hugging Face weights, then checks the
 * logits, the loss, every parameter gradient, every parameter after one AdamW step, and the losses
 * of four further steps. Prints the largest absolute and relative error per group and fails above
 * tolerance: logits and losses 1e-4 absolute; gradients and updated weights 1e-4 relative to each
 * Hugging Face tensor's largest magnitude. The config and AdamW settings come from the file's
 * metadata, so any file of the format works.
 *
 * GPT-2 weights go in through pt_model_load_hf_safetensors (so that is tested too). Llama weights
 * go in through this file's own map from Hugging Face's LlamaForCausalLM tensors to pipetrain's
 * (llama_parts: q/k/v_proj stacked by rows into attn.qkv, gate/up_proj into mlp.gate_up, ...), so
 * the check does not lean on the import code it could be checking (pt_model_load_hf_safetensors,
 * models/hf_llama.c, must then load the same bits); gradients and updated weights are compared
 * per Hugging Face tensor through the same map.
 * A missing or unreadable file is a failure, not a skip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/model.h"
#include "pipetrain/safetensors.h"

#ifndef PT_REFERENCE_FILE
#define PT_REFERENCE_FILE "tests/models/reference/gpt2-ref.safetensors"
#endif

#define TOL_ABS 1e-4
#define TOL_REL 1e-4

typedef struct group {
    const char *name;
    double max_abs, max_rel; /* rel: a tensor's max abs error over its max |expected| */
    char worst[160];         /* tensor with the largest relative error */
    int relative;            /* 1: judged on max_rel, 0: on max_abs */
} group;

/* dst = src, cut to cap - 1 bytes. */
static void copy_name(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src) < cap - 1 ? strlen(src) : cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void group_add(group *g, const char *tensor, const float *got, const float *want, size_t n)
{
    double err = 0.0, mag = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]);
        err = e > err || isnan(e) ? e : err;
        mag = fabs(want[i]) > mag ? fabs(want[i]) : mag;
    }
    double rel = mag > 0 ? err / mag : err;
    if (err > g->max_abs || isnan(err))
        g->max_abs = err;
    if (rel > g->max_rel || isnan(rel) || !g->worst[0]) {
        g->max_rel = rel;
        copy_name(g->worst, sizeof(g->worst), tensor);
    }
}

/* The end-to-end check of the first AdamW step from OUR gradients. That step moves a weight by
 * lr * g / (|g| + eps) (m and v bias-corrected at t = 1), whose sensitivity to g is
 * lr * eps / (|g| + eps)^2: for gradients near eps (1e-8) it turns gradient differences at float32
 * rounding level into update differences far above 1e-4 (the key bias's gradient, exactly zero in
 * exact arithmetic since softmax ignores a constant added to all of a row's scores, is such noise
 * of about 1e-11 and moves weights by 1e-6). So each weight may differ by the 1e-4 relative
 * tolerance plus what the measured gradient difference explains through that derivative (its
 * largest value between the two gradients); anything beyond is an error. The optimizer alone is
 * checked without this allowance by the "optimizer" group. */
typedef struct update_check {
    double max_abs, max_ratio; /* ratio: error / allowance, must stay <= 1 */
    char worst[160];
    size_t n_explained; /* weights beyond 1e-4 relative, explained by their gradient's difference */
} update_check;

static void update_check_add(update_check *u, const char *tensor, const float *got, const float *want,
                             const float *g_ours, const float *g_exp, size_t n, double lr, double eps)
{
    double mag = 0.0;
    for (size_t i = 0; i < n; i++)
        mag = fabs(want[i]) > mag ? fabs(want[i]) : mag;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]), base = TOL_REL * mag;
        double dg = fabs((double)g_ours[i] - (double)g_exp[i]);
        double gmin = ((double)g_ours[i] > 0) != ((double)g_exp[i] > 0)
                          ? 0.0
                          : fmin(fabs((double)g_ours[i]), fabs((double)g_exp[i]));
        double allowed = base + 1.01 * lr * eps * dg / ((gmin + eps) * (gmin + eps));
        double ratio = allowed > 0 ? e / allowed : (e > 0 ? INFINITY : 0.0);
        if (isnan(e))
            ratio = INFINITY;
        if (e > base)
            u->n_explained++;
        if (e > u->max_abs || isnan(e))
            u->max_abs = e;
        if (ratio > u->max_ratio || !u->worst[0]) {
            u->max_ratio = ratio;
            copy_name(u->worst, sizeof(u->worst), tensor);
        }
    }
}

static int group_report(const group *g)
{
    double v = g->relative ? g->max_rel : g->max_abs, tol = g->relative ? TOL_REL : TOL_ABS;
    int ok = v <= tol; /* NaN fails */
    printf("%-9s max abs err %.3e  max rel err %.3e  (%s tolerance %.0e%s%s)  %s\n", g->name, g->max_abs, g->max_rel,
           g->relative ? "relative" : "absolute", tol, g->relative ? ", worst " : "", g->relative ? g->worst : "",
           ok ? "ok" : "FAIL");
    return ok;
}

/* Reads an integer from the file's metadata. */
static pt_status meta_int(pt_safetensors *f, const char *path, const char *key, int *out)
{
    const char *s = pt_safetensors_metadata(f, key);
    char *end = NULL;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || *end || v <= 0 || v > (1 << 30))
        return pt_fail(PT_EFORMAT, "%s: metadata \"%s\" is missing or not a positive integer", path, key);
    *out = (int)v;
    return PT_OK;
}

static pt_status meta_float(pt_safetensors *f, const char *path, const char *key, float *out)
{
    const char *s = pt_safetensors_metadata(f, key);
    char *end = NULL;
    double v = s ? strtod(s, &end) : 0;
    if (!s || *end || !isfinite(v))
        return pt_fail(PT_EFORMAT, "%s: metadata \"%s\" is missing or not a number", path, key);
    *out = (float)v;
    return PT_OK;
}

/* Reads tensor `name` (expected numel n) as float into dst. */
static pt_status read_expected(pt_safetensors *f, const char *path, const char *name, float *dst, size_t n)
{
    const pt_safetensors_tensor *t = pt_safetensors_find(f, name);
    if (!t)
        return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" is missing", path, name);
    if (t->numel != n)
        return pt_fail(PT_EFORMAT, "%s: tensor \"%s\" has %zu elements, expected %zu", path, name, t->numel, n);
    return pt_safetensors_read_f32(f, t, dst, n);
}

/* One Hugging Face tensor: rows [row0, row0 + rows) of a pipetrain tensor in our (out, in) layout
 * (all of it for GPT-2, whose Conv1D weights the file holds transposed, as [in, out]). */
typedef struct hf_part {
    char hf[128];
    size_t row0, rows, cols;
    int transposed;
} hf_part;

#define MAX_PARTS 3

static pt_status set_part(hf_part *q, size_t row0, size_t rows, size_t cols, const char *fmt, int block)
{
    if ((size_t)snprintf(q->hf, sizeof(q->hf), fmt, block) >= sizeof(q->hf))
        return pt_fail(PT_EINVAL, "Hugging Face name of block %d is too long", block);
    q->row0 = row0;
    q->rows = rows;
    q->cols = cols;
    q->transposed = 0;
    return PT_OK;
}

/* The Hugging Face LlamaForCausalLM tensors that pipetrain tensor p is made of (issue 15's map):
 * model.embed_tokens = wte; per block input_layernorm = ln1, q/k/v_proj stacked by rows = attn.qkv,
 * o_proj = attn.proj, post_attention_layernorm = ln2, gate_proj then up_proj = mlp.gate_up,
 * down_proj = mlp.down; model.norm = lnf; lm_head = lm_head. Shapes are checked against the config,
 * so a model whose tensor differs from Hugging Face's layout fails here, naming it. */
static pt_status llama_parts(const pt_model_config *c, const pt_param *p, hf_part *parts, int *n)
{
    const size_t C = (size_t)c->n_embd, hs = C / (size_t)c->n_head, q = (size_t)c->n_head * hs;
    const size_t kv = (size_t)pt_model_kv_heads(c) * hs, H = (size_t)c->intermediate_size;
    const size_t V = (size_t)c->vocab_padded;
    int b = -1, used = 0;
    const char *rest = NULL;
    size_t want_rows = 0, want_cols = 0;
    *n = 1;
    if (sscanf(p->name, "blocks.%d.%n", &b, &used) == 1 && used > 0 && b >= 0)
        rest = p->name + used;
    if (strcmp(p->name, "wte.weight") == 0) {
        PT_CHECK(set_part(&parts[0], 0, V, C, "model.embed_tokens.weight", 0));
    } else if (strcmp(p->name, "lnf.weight") == 0) {
        PT_CHECK(set_part(&parts[0], 0, C, 1, "model.norm.weight", 0));
    } else if (strcmp(p->name, "lm_head.weight") == 0) {
        PT_CHECK(set_part(&parts[0], 0, V, C, "lm_head.weight", 0));
    } else if (rest && strcmp(rest, "ln1.weight") == 0) {
        PT_CHECK(set_part(&parts[0], 0, C, 1, "model.layers.%d.input_layernorm.weight", b));
    } else if (rest && strcmp(rest, "ln2.weight") == 0) {
        PT_CHECK(set_part(&parts[0], 0, C, 1, "model.layers.%d.post_attention_layernorm.weight", b));
    } else if (rest && strcmp(rest, "attn.qkv.weight") == 0) {
        *n = 3;
        PT_CHECK(set_part(&parts[0], 0, q, C, "model.layers.%d.self_attn.q_proj.weight", b));
        PT_CHECK(set_part(&parts[1], q, kv, C, "model.layers.%d.self_attn.k_proj.weight", b));
        PT_CHECK(set_part(&parts[2], q + kv, kv, C, "model.layers.%d.self_attn.v_proj.weight", b));
    } else if (rest && strcmp(rest, "attn.proj.weight") == 0) {
        PT_CHECK(set_part(&parts[0], 0, C, q, "model.layers.%d.self_attn.o_proj.weight", b));
    } else if (rest && strcmp(rest, "mlp.gate_up.weight") == 0) {
        *n = 2;
        PT_CHECK(set_part(&parts[0], 0, H, C, "model.layers.%d.mlp.gate_proj.weight", b));
        PT_CHECK(set_part(&parts[1], H, H, C, "model.layers.%d.mlp.up_proj.weight", b));
    } else if (rest && strcmp(rest, "mlp.down.weight") == 0) {
        PT_CHECK(set_part(&parts[0], 0, C, H, "model.layers.%d.mlp.down_proj.weight", b));
    } else {
        return pt_fail(PT_EINVAL, "pipetrain tensor %s has no Hugging Face Llama counterpart in this test's map", p->name);
    }
    want_rows = parts[*n - 1].row0 + parts[*n - 1].rows;
    want_cols = parts[0].cols;
    size_t rows = (size_t)p->shape[0], cols = p->ndim == 2 ? (size_t)p->shape[1] : 1;
    if (p->ndim > 2 || rows != want_rows || cols != want_cols || p->numel != rows * cols)
        return pt_fail(PT_EFORMAT,
                       "pipetrain tensor %s is %zu x %zu; Hugging Face's layout (%s%s) needs %zu x %zu", p->name, rows,
                       cols, parts[0].hf, *n > 1 ? " and the tensors stacked under it" : "", want_rows, want_cols);
    return PT_OK;
}

/* The Hugging Face tensors of pipetrain tensor p: llama_parts, or GPT-2's one (pt_model_hf_name). */
static pt_status tensor_parts(const pt_model_config *c, const pt_param *p, hf_part *parts, int *n)
{
    if (c->arch == PT_ARCH_LLAMA)
        return llama_parts(c, p, parts, n);
    int tr = 0;
    PT_CHECK(pt_model_hf_name(p->name, parts[0].hf, sizeof(parts[0].hf), &tr));
    parts[0].row0 = 0;
    parts[0].rows = (size_t)p->shape[0];
    parts[0].cols = p->numel / (size_t)p->shape[0];
    parts[0].transposed = tr;
    *n = 1;
    return PT_OK;
}

/* Expected values of our tensor p from the file's `prefix`<hf name> tensors, in our (out, in)
 * layout, into dst (p->numel floats; tmp as large). */
static pt_status read_expected_param(pt_safetensors *f, const char *path, const char *prefix,
                                     const pt_model_config *cfg, const pt_param *p, float *dst, float *tmp)
{
    hf_part parts[MAX_PARTS];
    int n = 0;
    PT_CHECK(tensor_parts(cfg, p, parts, &n));
    for (int k = 0; k < n; k++) {
        char name[192];
        const hf_part *q = &parts[k];
        if ((size_t)snprintf(name, sizeof(name), "%s%s", prefix, q->hf) >= sizeof(name))
            return pt_fail(PT_EINVAL, "tensor name %s%s is too long", prefix, q->hf);
        if (!q->transposed) {
            PT_CHECK(read_expected(f, path, name, dst + q->row0 * q->cols, q->rows * q->cols));
            continue;
        }
        PT_CHECK(read_expected(f, path, name, tmp, p->numel));
        const int rows = p->shape[1], cols = p->shape[0]; /* file: [in, out] */
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                dst[(size_t)c * rows + r] = tmp[(size_t)r * cols + c];
    }
    return PT_OK;
}

/* group_add for each Hugging Face tensor of p (got and want in our layout, p->numel floats). */
static pt_status group_add_param(group *g, const pt_model_config *cfg, const pt_param *p, const float *got,
                                 const float *want)
{
    hf_part parts[MAX_PARTS];
    int n = 0;
    PT_CHECK(tensor_parts(cfg, p, parts, &n));
    for (int k = 0; k < n; k++) {
        size_t o = parts[k].row0 * parts[k].cols, len = parts[k].rows * parts[k].cols;
        group_add(g, parts[k].hf, got + o, want + o, len);
    }
    return PT_OK;
}

/* update_check_add for each Hugging Face tensor of p. */
static pt_status update_check_param(update_check *u, const pt_model_config *cfg, const pt_param *p, const float *got,
                                    const float *want, const float *g_ours, const float *g_exp, double lr, double eps)
{
    hf_part parts[MAX_PARTS];
    int n = 0;
    PT_CHECK(tensor_parts(cfg, p, parts, &n));
    for (int k = 0; k < n; k++) {
        size_t o = parts[k].row0 * parts[k].cols, len = parts[k].rows * parts[k].cols;
        update_check_add(u, parts[k].hf, got + o, want + o, g_ours + o, g_exp + o, len, lr, eps);
    }
    return PT_OK;
}

/* Loads a Llama case's weights (the file's Hugging Face tensors, through llama_parts) into m.
 * tmp holds the largest tensor. */
static pt_status load_llama(pt_model *m, pt_safetensors *f, const char *path, const pt_backend *be, pt_stream *stream,
                            float *host, float *tmp)
{
    const pt_model_config *cfg = pt_model_config_of(m);
    for (int i = 0; i < pt_model_n_tensors(m); i++) {
        const pt_param *p = pt_model_tensor(m, i);
        PT_CHECK(read_expected_param(f, path, "", cfg, p, host, tmp));
        PT_CHECK(be->memcpy_h2d(stream, pt_model_params(m) + p->offset, host, p->numel * sizeof(float)));
    }
    return be->stream_sync(stream);
}

typedef struct run {
    const char *path;
    pt_safetensors *f;
    const pt_backend *be;
    pt_stream *stream;
    pt_model *m;
    float *dev_m, *dev_v;
    float lr, beta1, beta2, eps, wd;
    int B, T, V;
} run;

static pt_status forward_loss(run *r, double *loss)
{
    double sum = 0;
    int64_t n = 0;
    PT_CHECK(pt_model_forward(r->m, 0));
    PT_CHECK(pt_model_slot_loss(r->m, 0, &sum, &n));
    if (n == 0)
        return pt_fail(PT_EFORMAT, "%s: no target is >= 0", r->path);
    *loss = sum / (double)n;
    return PT_OK;
}

static pt_status backward_step(run *r, int t, int64_t n_tokens)
{
    PT_CHECK(pt_model_backward(r->m, 0, 1.0f / (float)n_tokens));
    PT_CHECK(pt_model_reduce_tied_grads(r->m));
    for (int i = 0; i < pt_model_n_tensors(r->m); i++) {
        const pt_param *p = pt_model_tensor(r->m, i);
        PT_CHECK(r->be->adamw_update(r->stream, pt_model_params(r->m) + p->offset, pt_model_grads(r->m) + p->offset,
                                     r->dev_m + p->offset, r->dev_v + p->offset, p->numel, r->lr, r->beta1, r->beta2,
                                     r->eps, p->decay ? r->wd : 0.0f, 1.0f, t));
    }
    return r->be->stream_sync(r->stream);
}

/* The optional metadata `key` as a double into *out (left alone when absent). */
static pt_status meta_opt_double(pt_safetensors *f, const char *path, const char *key, double *out)
{
    const char *s = pt_safetensors_metadata(f, key);
    if (!s)
        return PT_OK;
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v))
        return pt_fail(PT_EFORMAT, "%s: metadata \"%s\" is \"%s\", not a number", path, key, s);
    *out = v;
    return PT_OK;
}

/* The llama fields of the config from the file's metadata (Hugging Face config.json's names where
 * it has one: rms_norm_eps, rope_theta, tie_word_embeddings, max_position_embeddings, and
 * rope_scaling_<field> for rope_scaling's fields). */
static pt_status llama_config(pt_safetensors *f, const char *path, int seq, pt_model_config *cfg)
{
    cfg->arch = PT_ARCH_LLAMA;
    PT_CHECK(meta_int(f, path, "n_kv_head", &cfg->n_kv_head));
    PT_CHECK(meta_int(f, path, "intermediate_size", &cfg->intermediate_size));
    PT_CHECK(meta_float(f, path, "rms_norm_eps", &cfg->rms_norm_eps));
    if (!pt_safetensors_metadata(f, "rope_theta"))
        return pt_fail(PT_EFORMAT, "%s: metadata \"rope_theta\" is missing", path);
    PT_CHECK(meta_opt_double(f, path, "rope_theta", &cfg->rope_theta));
    const char *tie = pt_safetensors_metadata(f, "tie_word_embeddings");
    if (!tie || (strcmp(tie, "true") != 0 && strcmp(tie, "false") != 0))
        return pt_fail(PT_EFORMAT, "%s: metadata \"tie_word_embeddings\" must be \"true\" or \"false\"", path);
    cfg->tie_word_embeddings = strcmp(tie, "true") == 0;
    cfg->max_seq_len = seq;
    if (pt_safetensors_metadata(f, "max_position_embeddings"))
        PT_CHECK(meta_int(f, path, "max_position_embeddings", &cfg->max_seq_len));
    const char *type = pt_safetensors_metadata(f, "rope_scaling_type");
    if (type) {
        if (strcmp(type, "llama3") != 0)
            return pt_fail(PT_EFORMAT, "%s: rope_scaling_type \"%s\" is not Llama 3.1's \"llama3\"", path, type);
        double old = 0;
        if (!pt_safetensors_metadata(f, "rope_scaling_factor") ||
            !pt_safetensors_metadata(f, "rope_scaling_low_freq_factor") ||
            !pt_safetensors_metadata(f, "rope_scaling_high_freq_factor") ||
            !pt_safetensors_metadata(f, "rope_scaling_original_max_position_embeddings"))
            return pt_fail(PT_EFORMAT, "%s: rope_scaling_type llama3 needs rope_scaling_factor, _low_freq_factor, "
                                       "_high_freq_factor and _original_max_position_embeddings", path);
        PT_CHECK(meta_opt_double(f, path, "rope_scaling_factor", &cfg->rope_scaling_factor));
        PT_CHECK(meta_opt_double(f, path, "rope_scaling_low_freq_factor", &cfg->rope_low_freq_factor));
        PT_CHECK(meta_opt_double(f, path, "rope_scaling_high_freq_factor", &cfg->rope_high_freq_factor));
        PT_CHECK(meta_opt_double(f, path, "rope_scaling_original_max_position_embeddings", &old));
        cfg->rope_original_max_pos = (int)old;
    }
    return PT_OK;
}

static int run_reference(run *r)
{
    const char *path = r->path;
    pt_model_config cfg = { 0 };
    snprintf(cfg.name, sizeof(cfg.name), "reference");
    int batch = 0, seq = 0;
    const char *model = pt_safetensors_metadata(r->f, "model");
    const int llama = model && strcmp(model, "llama") == 0;
    if (model && !llama && strcmp(model, "gpt2") != 0) {
        fprintf(stderr, "test_reference: %s: metadata model \"%s\" is neither gpt2 nor llama\n", path, model);
        return 0;
    }
    if (meta_int(r->f, path, "n_layer", &cfg.n_layer) || meta_int(r->f, path, "n_head", &cfg.n_head) ||
        meta_int(r->f, path, "n_embd", &cfg.n_embd) || meta_int(r->f, path, "vocab_size", &cfg.vocab_size) ||
        meta_int(r->f, path, "batch", &batch) || meta_int(r->f, path, "seq", &seq) ||
        (llama ? llama_config(r->f, path, seq, &cfg) : meta_int(r->f, path, "n_ctx", &cfg.max_seq_len)) ||
        meta_float(r->f, path, "adamw_lr", &r->lr) || meta_float(r->f, path, "adamw_beta1", &r->beta1) ||
        meta_float(r->f, path, "adamw_beta2", &r->beta2) || meta_float(r->f, path, "adamw_eps", &r->eps) ||
        meta_float(r->f, path, "adamw_weight_decay", &r->wd)) {
        fprintf(stderr, "test_reference: %s\n", pt_last_error());
        return 0;
    }
    cfg.vocab_padded = cfg.vocab_size;
    r->B = batch;
    r->T = seq;
    r->V = cfg.vocab_size;
    printf("%s: %s, n_layer %d, n_head %d, n_embd %d, vocab %d, ctx %d, batch %d x %d; AdamW lr %g betas %g/%g eps %g "
           "wd %g\n",
           path, pt_model_arch_name(cfg.arch), cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.max_seq_len,
           batch, seq, (double)r->lr, (double)r->beta1, (double)r->beta2, (double)r->eps, (double)r->wd);
    if (llama) {
        printf("  llama: n_kv_head %d, intermediate %d, rms_norm_eps %g, rope_theta %g, %s LM head, rope_scaling ",
               cfg.n_kv_head, cfg.intermediate_size, (double)cfg.rms_norm_eps, cfg.rope_theta,
               cfg.tie_word_embeddings ? "tied" : "untied");
        if (cfg.rope_scaling_factor != 0.0)
            printf("llama3 (factor %g, low/high freq factors %g/%g, original max positions %d)\n", cfg.rope_scaling_factor,
                   cfg.rope_low_freq_factor, cfg.rope_high_freq_factor, cfg.rope_original_max_pos);
        else
            printf("none\n");
    }

    const size_t N = (size_t)batch * seq;
    pt_model_opts o = { .micro_batch = batch, .seq_len = seq, .n_slots = 1, .recompute = 0 };
    pt_status st = PT_OK;
    float *logits = NULL, *want = NULL, *got = NULL, *tmp = NULL, *p0 = NULL, *gexp = NULL, *g_ours = NULL, *scratch_dev = NULL;
    int32_t *tokens = NULL, *targets = NULL;
    int ok = 1;
    PT_TRY(pt_model_create(&cfg, 0, pt_model_n_layers(&cfg) - 1, &o, r->be, r->stream, &r->m), fail);
    const size_t np = pt_model_n_params(r->m);
    size_t cap = np > N * cfg.vocab_padded ? np : N * cfg.vocab_padded;
    logits = malloc(N * cfg.vocab_padded * sizeof(float));
    want = malloc(cap * sizeof(float));
    got = malloc(cap * sizeof(float));
    tmp = malloc(cap * sizeof(float));
    p0 = malloc(np * sizeof(float));
    gexp = malloc(np * sizeof(float));
    g_ours = malloc(np * sizeof(float));
    tokens = malloc(N * sizeof(int32_t));
    targets = malloc(N * sizeof(int32_t));
    if (!logits || !want || !got || !tmp || !p0 || !gexp || !g_ours || !tokens || !targets) {
        st = pt_fail(PT_ENOMEM, "out of memory");
        goto fail;
    }
    int import_same = 1;
    if (llama) {
        /* this test's map first; then the importer must give the same bits */
        PT_TRY(load_llama(r->m, r->f, path, r->be, r->stream, want, tmp), fail);
        PT_TRY(r->be->memcpy_d2h(r->stream, p0, pt_model_params(r->m), np * sizeof(float)), fail);
        PT_TRY(pt_model_load_hf_safetensors(r->m, path), fail);
        PT_TRY(r->be->memcpy_d2h(r->stream, got, pt_model_params(r->m), np * sizeof(float)), fail);
        import_same = memcmp(p0, got, np * sizeof(float)) == 0;
        printf("import    pt_model_load_hf_safetensors %s this test's Hugging Face map  %s\n",
               import_same ? "loads the same bits as" : "DIFFERS from", import_same ? "ok" : "FAIL");
        PT_TRY(r->be->memcpy_h2d(r->stream, pt_model_params(r->m), p0, np * sizeof(float)), fail);
    } else {
        PT_TRY(pt_model_load_hf_safetensors(r->m, path), fail);
    }
    const pt_safetensors_tensor *ti = pt_safetensors_find(r->f, "input_ids");
    const pt_safetensors_tensor *tt = pt_safetensors_find(r->f, "targets");
    if (!ti || !tt || ti->numel != N || tt->numel != N) {
        st = pt_fail(PT_EFORMAT, "%s: input_ids and targets must be (%d,%d) tensors", path, batch, seq);
        goto fail;
    }
    PT_TRY(pt_safetensors_read_i32(r->f, ti, tokens, N), fail);
    PT_TRY(pt_safetensors_read_i32(r->f, tt, targets, N), fail);
    for (size_t i = 0; i < N; i++) {
        if (tokens[i] < 0 || tokens[i] >= cfg.vocab_size || targets[i] >= cfg.vocab_size) {
            st = pt_fail(PT_EFORMAT, "%s: token or target %zu is outside the vocabulary", path, i);
            goto fail;
        }
    }
    PT_TRY(r->be->memcpy_h2d(r->stream, pt_model_slot_tokens(r->m, 0), tokens, N * sizeof(int32_t)), fail);
    PT_TRY(r->be->memcpy_h2d(r->stream, pt_model_slot_targets(r->m, 0), targets, N * sizeof(int32_t)), fail);
    PT_TRY(pt_backend_alloc(r->be, (void **)&r->dev_m, np * sizeof(float)), fail);
    PT_TRY(pt_backend_alloc(r->be, (void **)&r->dev_v, np * sizeof(float)), fail);
    PT_TRY(r->be->memset_zero(r->stream, r->dev_m, np * sizeof(float)), fail);
    PT_TRY(r->be->memset_zero(r->stream, r->dev_v, np * sizeof(float)), fail);
    PT_TRY(pt_backend_alloc(r->be, (void **)&scratch_dev, 4 * np * sizeof(float)), fail);

    /* forward: logits and loss */
    double loss = 0;
    int64_t n_tokens = 0;
    PT_TRY(pt_model_zero_grads(r->m), fail);
    PT_TRY(pt_model_forward(r->m, 0), fail);
    double loss_sum = 0;
    PT_TRY(pt_model_slot_loss(r->m, 0, &loss_sum, &n_tokens), fail);
    loss = loss_sum / (double)n_tokens;
    PT_TRY(pt_model_slot_logits(r->m, 0, logits), fail);
    PT_TRY(read_expected(r->f, path, "expected.logits", want, N * cfg.vocab_size), fail);
    group g_logits = { .name = "logits" }, g_loss = { .name = "loss" };
    group_add(&g_logits, "expected.logits", logits, want, N * cfg.vocab_size); /* Vp == V here */
    float loss_f = (float)loss, want_loss = 0;
    PT_TRY(read_expected(r->f, path, "expected.loss", &want_loss, 1), fail);
    group_add(&g_loss, "expected.loss", &loss_f, &want_loss, 1);

    /* backward: gradients */
    PT_TRY(pt_model_backward(r->m, 0, 1.0f / (float)n_tokens), fail);
    PT_TRY(pt_model_reduce_tied_grads(r->m), fail);
    PT_TRY(r->be->memcpy_d2h(r->stream, got, pt_model_grads(r->m), np * sizeof(float)), fail);
    memcpy(g_ours, got, np * sizeof(float));
    group g_grad = { .name = "grads", .relative = 1 };
    for (int i = 0; i < pt_model_n_tensors(r->m); i++) {
        const pt_param *p = pt_model_tensor(r->m, i);
        PT_TRY(read_expected_param(r->f, path, "expected.grad.", &cfg, p, want, tmp), fail);
        PT_TRY(group_add_param(&g_grad, &cfg, p, got + p->offset, want), fail);
    }

    /* one AdamW step, checked two ways. "optimizer": the imported weights stepped with the file's
     * own gradients (the update formula and settings against PyTorch's, everywhere). "updated":
     * the model's weights stepped with our gradients (end to end), except where the gradient is
     * rounding noise (see group_add_conditioned). */
    PT_TRY(r->be->memcpy_d2h(r->stream, p0, pt_model_params(r->m), np * sizeof(float)), fail);
    group g_opt = { .name = "optimizer", .relative = 1 };
    for (int i = 0; i < pt_model_n_tensors(r->m); i++) {
        const pt_param *p = pt_model_tensor(r->m, i);
        float *d = scratch_dev; /* param, grad, m, v of one tensor */
        PT_TRY(read_expected_param(r->f, path, "expected.grad.", &cfg, p, want, tmp), fail);
        PT_TRY(r->be->memcpy_h2d(r->stream, d, p0 + p->offset, p->numel * sizeof(float)), fail);
        PT_TRY(r->be->memcpy_h2d(r->stream, d + p->numel, want, p->numel * sizeof(float)), fail);
        PT_TRY(r->be->memset_zero(r->stream, d + 2 * p->numel, 2 * p->numel * sizeof(float)), fail);
        PT_TRY(r->be->adamw_update(r->stream, d, d + p->numel, d + 2 * p->numel, d + 3 * p->numel, p->numel, r->lr,
                                   r->beta1, r->beta2, r->eps, p->decay ? r->wd : 0.0f, 1.0f, 1),
               fail);
        PT_TRY(r->be->memcpy_d2h(r->stream, got, d, p->numel * sizeof(float)), fail);
        PT_TRY(read_expected_param(r->f, path, "expected.updated.", &cfg, p, want, tmp), fail);
        PT_TRY(group_add_param(&g_opt, &cfg, p, got, want), fail);
    }
    for (int i = 0; i < pt_model_n_tensors(r->m); i++) {
        const pt_param *p = pt_model_tensor(r->m, i);
        PT_TRY(r->be->adamw_update(r->stream, pt_model_params(r->m) + p->offset, pt_model_grads(r->m) + p->offset,
                                   r->dev_m + p->offset, r->dev_v + p->offset, p->numel, r->lr, r->beta1, r->beta2,
                                   r->eps, p->decay ? r->wd : 0.0f, 1.0f, 1),
               fail);
    }
    PT_TRY(r->be->memcpy_d2h(r->stream, got, pt_model_params(r->m), np * sizeof(float)), fail);
    update_check u = { 0 };
    for (int i = 0; i < pt_model_n_tensors(r->m); i++) {
        const pt_param *p = pt_model_tensor(r->m, i);
        PT_TRY(read_expected_param(r->f, path, "expected.grad.", &cfg, p, gexp, tmp), fail);
        PT_TRY(read_expected_param(r->f, path, "expected.updated.", &cfg, p, want, tmp), fail);
        PT_TRY(update_check_param(&u, &cfg, p, got + p->offset, want, g_ours + p->offset, gexp, r->lr, r->eps), fail);
    }

    /* four further steps: the loss before each */
    const pt_safetensors_tensor *tl = pt_safetensors_find(r->f, "expected.losses");
    if (!tl || tl->numel < 1 || tl->numel > 1024) {
        st = pt_fail(PT_EFORMAT, "%s: expected.losses is missing or empty", path);
        goto fail;
    }
    float want_losses[1024], got_losses[1024];
    PT_TRY(pt_safetensors_read_f32(r->f, tl, want_losses, 1024), fail);
    for (size_t i = 0; i < tl->numel; i++) {
        PT_TRY(pt_model_zero_grads(r->m), fail);
        double l = 0;
        PT_TRY(forward_loss(r, &l), fail);
        got_losses[i] = (float)l;
        if (i + 1 < tl->numel)
            PT_TRY(backward_step(r, (int)i + 2, n_tokens), fail);
        else
            PT_TRY(pt_model_slot_release(r->m, 0), fail);
    }
    group g_losses = { .name = "losses" };
    group_add(&g_losses, "expected.losses", got_losses, want_losses, tl->numel);
    printf("loss %.6f (expected %.6f); losses", loss, (double)want_loss);
    for (size_t i = 0; i < tl->numel; i++)
        printf(" %.6f/%.6f", (double)got_losses[i], (double)want_losses[i]);
    printf(" (ours/expected)\n");

    ok &= import_same;
    ok &= group_report(&g_logits);
    ok &= group_report(&g_loss);
    ok &= group_report(&g_grad);
    ok &= group_report(&g_opt);
    int upd_ok = u.max_ratio <= 1.0;
    printf("updated   max abs err %.3e  error / allowance %.3f (1e-4 relative + the gradient difference's effect on "
           "AdamW; %zu of %zu weights beyond 1e-4 relative%s%s%s)  %s\n",
           u.max_abs, u.max_ratio, u.n_explained, np, upd_ok ? ", all explained" : "", ", worst ", u.worst,
           upd_ok ? "ok" : "FAIL");
    ok &= upd_ok;
    ok &= group_report(&g_losses);
    goto done;
fail:
    fprintf(stderr, "test_reference: %s\n", pt_last_error());
    ok = 0;
done:
    (void)st;
    pt_backend_free(r->be, scratch_dev);
    free(p0);
    free(gexp);
    free(g_ours);
    free(logits);
    free(want);
    free(got);
    free(tmp);
    free(tokens);
    free(targets);
    return ok;
}

int main(int argc, char **argv)
{
    const char *backend = "cpu";
    int a = 1;
    if (argc >= 3 && strcmp(argv[1], "--backend") == 0) {
        backend = argv[2];
        a = 3;
    }
    if (argc - a > 1 || (argc - a == 1 && (strcmp(argv[a], "-h") == 0 || strcmp(argv[a], "--help") == 0 ||
                                           argv[a][0] == '-'))) {
        fprintf(stderr, "usage: test_reference [--backend cpu|cuda] [FILE]   (default cpu, %s)\n", PT_REFERENCE_FILE);
        return argc - a == 1 && (strcmp(argv[a], "-h") == 0 || strcmp(argv[a], "--help") == 0) ? 0 : 2;
    }
    run r = { .path = argc - a == 1 ? argv[a] : PT_REFERENCE_FILE };
    int ok = 0;
    if (pt_safetensors_open(r.path, &r.f) != PT_OK) {
        fprintf(stderr, "test_reference: %s\n", pt_last_error());
        return 1;
    }
    if (pt_backend_get(backend, &r.be) != PT_OK ||
        r.be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 0 }, &r.stream) != PT_OK) {
        fprintf(stderr, "test_reference: %s\n", pt_last_error());
        pt_safetensors_close(r.f);
        return 1;
    }
    ok = run_reference(&r);
    pt_backend_free(r.be, r.dev_v);
    pt_backend_free(r.be, r.dev_m);
    pt_model_destroy(r.m);
    r.be->stream_destroy(r.stream);
    pt_safetensors_close(r.f);
    printf("%s\n", ok ? "reference check passed" : "reference check FAILED");
    return ok ? 0 : 1;
}
