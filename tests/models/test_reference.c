/* test_reference [FILE] — reproduces a PyTorch GPT-2 computation stored as safetensors
 * (default: tests/models/reference/gpt2-ref.safetensors; format in that folder's README): imports
 * the Hugging Face weights, then checks the logits, the loss, every parameter gradient, every
 * parameter after one AdamW step, and the losses of four further steps. Prints the largest
 * absolute and relative error per group and fails above tolerance: logits and losses 1e-4
 * absolute; gradients and updated weights 1e-4 relative to each tensor's largest magnitude.
 * The config and AdamW settings come from the file's metadata, so any file of the format works.
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
    const char *worst;       /* tensor with the largest relative error */
    int relative;            /* 1: judged on max_rel, 0: on max_abs */
} group;

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
    if (rel > g->max_rel || isnan(rel)) {
        g->max_rel = rel;
        g->worst = tensor;
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
    const char *worst;
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
        if (ratio > u->max_ratio) {
            u->max_ratio = ratio;
            u->worst = tensor;
        }
    }
}

static int group_report(const group *g)
{
    double v = g->relative ? g->max_rel : g->max_abs, tol = g->relative ? TOL_REL : TOL_ABS;
    int ok = v <= tol; /* NaN fails */
    printf("%-9s max abs err %.3e  max rel err %.3e  (%s tolerance %.0e%s%s)  %s\n", g->name, g->max_abs, g->max_rel,
           g->relative ? "relative" : "absolute", tol, g->worst ? ", worst " : "", g->worst ? g->worst : "",
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

/* Expected values of our tensor p from the file's `prefix`<hf name>, in our (out, in) layout. */
static pt_status read_expected_param(pt_safetensors *f, const char *path, const char *prefix, const pt_param *p,
                                     float *dst, float *tmp)
{
    char hf[128], name[192];
    int tr = 0;
    PT_CHECK(pt_model_hf_name(p->name, hf, sizeof(hf), &tr));
    snprintf(name, sizeof(name), "%s%s", prefix, hf);
    if (!tr)
        return read_expected(f, path, name, dst, p->numel);
    PT_CHECK(read_expected(f, path, name, tmp, p->numel));
    const int rows = p->shape[1], cols = p->shape[0]; /* file: [in, out] */
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)c * rows + r] = tmp[(size_t)r * cols + c];
    return PT_OK;
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

static int run_reference(run *r)
{
    const char *path = r->path;
    pt_model_config cfg = { 0 };
    snprintf(cfg.name, sizeof(cfg.name), "reference");
    int batch = 0, seq = 0;
    if (meta_int(r->f, path, "n_layer", &cfg.n_layer) || meta_int(r->f, path, "n_head", &cfg.n_head) ||
        meta_int(r->f, path, "n_embd", &cfg.n_embd) || meta_int(r->f, path, "vocab_size", &cfg.vocab_size) ||
        meta_int(r->f, path, "n_ctx", &cfg.max_seq_len) || meta_int(r->f, path, "batch", &batch) ||
        meta_int(r->f, path, "seq", &seq) || meta_float(r->f, path, "adamw_lr", &r->lr) ||
        meta_float(r->f, path, "adamw_beta1", &r->beta1) || meta_float(r->f, path, "adamw_beta2", &r->beta2) ||
        meta_float(r->f, path, "adamw_eps", &r->eps) || meta_float(r->f, path, "adamw_weight_decay", &r->wd)) {
        fprintf(stderr, "test_reference: %s\n", pt_last_error());
        return 0;
    }
    cfg.vocab_padded = cfg.vocab_size;
    r->B = batch;
    r->T = seq;
    r->V = cfg.vocab_size;
    printf("%s: n_layer %d, n_head %d, n_embd %d, vocab %d, ctx %d, batch %d x %d; AdamW lr %g betas %g/%g eps %g "
           "wd %g\n",
           path, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.max_seq_len, batch, seq, (double)r->lr,
           (double)r->beta1, (double)r->beta2, (double)r->eps, (double)r->wd);

    const size_t N = (size_t)batch * seq;
    pt_model_opts o = { .micro_batch = batch, .seq_len = seq, .n_slots = 1, .recompute = 0 };
    pt_status st = PT_OK;
    float *logits = NULL, *want = NULL, *got = NULL, *tmp = NULL, *p0 = NULL, *gexp = NULL, *g_ours = NULL, *scratch_dev = NULL;
    int32_t *tokens = NULL, *targets = NULL;
    int ok = 1;
    PT_TRY(pt_model_create(&cfg, 0, pt_model_n_layers(&cfg) - 1, &o, r->be, r->stream, &r->m), fail);
    PT_TRY(pt_model_load_hf_safetensors(r->m, path), fail);
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
        PT_TRY(read_expected_param(r->f, path, "expected.grad.", p, want, tmp), fail);
        group_add(&g_grad, p->name, got + p->offset, want, p->numel);
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
        PT_TRY(read_expected_param(r->f, path, "expected.grad.", p, want, tmp), fail);
        PT_TRY(r->be->memcpy_h2d(r->stream, d, p0 + p->offset, p->numel * sizeof(float)), fail);
        PT_TRY(r->be->memcpy_h2d(r->stream, d + p->numel, want, p->numel * sizeof(float)), fail);
        PT_TRY(r->be->memset_zero(r->stream, d + 2 * p->numel, 2 * p->numel * sizeof(float)), fail);
        PT_TRY(r->be->adamw_update(r->stream, d, d + p->numel, d + 2 * p->numel, d + 3 * p->numel, p->numel, r->lr,
                                   r->beta1, r->beta2, r->eps, p->decay ? r->wd : 0.0f, 1.0f, 1),
               fail);
        PT_TRY(r->be->memcpy_d2h(r->stream, got, d, p->numel * sizeof(float)), fail);
        PT_TRY(read_expected_param(r->f, path, "expected.updated.", p, want, tmp), fail);
        group_add(&g_opt, p->name, got, want, p->numel);
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
        PT_TRY(read_expected_param(r->f, path, "expected.grad.", p, gexp, tmp), fail);
        PT_TRY(read_expected_param(r->f, path, "expected.updated.", p, want, tmp), fail);
        update_check_add(&u, p->name, got + p->offset, want, g_ours + p->offset, gexp, p->numel, r->lr, r->eps);
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

    ok &= group_report(&g_logits);
    ok &= group_report(&g_loss);
    ok &= group_report(&g_grad);
    ok &= group_report(&g_opt);
    int upd_ok = u.max_ratio <= 1.0;
    printf("updated   max abs err %.3e  error / allowance %.3f (1e-4 relative + the gradient difference's effect on "
           "AdamW; %zu of %zu weights beyond 1e-4 relative%s%s%s)  %s\n",
           u.max_abs, u.max_ratio, u.n_explained, np, upd_ok ? ", all explained" : "", u.worst ? ", worst " : "", u.worst ? u.worst : "",
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
    if (argc > 2 || (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
        fprintf(stderr, "usage: test_reference [FILE]   (default %s)\n", PT_REFERENCE_FILE);
        return argc > 2 ? 2 : 0;
    }
    run r = { .path = argc == 2 ? argv[1] : PT_REFERENCE_FILE };
    int ok = 0;
    if (pt_safetensors_open(r.path, &r.f) != PT_OK) {
        fprintf(stderr, "test_reference: %s\n", pt_last_error());
        return 1;
    }
    if (pt_backend_get("cpu", &r.be) != PT_OK ||
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
