/* The training loop (shared by every step implementation) and the single-process trainer
 * (pipetrain/train.h). */
#include "pipetrain/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipetrain/json.h"
#include "pipetrain/timeutil.h"
#ifdef PT_TRAIN_HAVE_CKPT
#include "pipetrain/ckpt.h"
#include "pipetrain/fsutil.h"
#endif

void pt_train_cfg_defaults(pt_train_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->model = "gpt2-tiny";
    c->data = "builtin";
    c->backend = "cpu";
    c->seed = 1337;
    c->steps = 600;
    c->threads = 0;
    c->micro_batches = 1;
    c->micro_batch_size = 16;
    c->seq_len = 128;
    c->lr = 3e-3;
    c->lr_min = 3e-4;
    c->warmup = 30;
    c->weight_decay = 0.1;
    c->grad_clip = 1.0;
    c->beta1 = 0.9;
    c->beta2 = 0.95;
    c->eps = 1e-8;
    c->eval_every = 100;
    c->eval_batches = 8;
}

/* ---- metrics ---- */

typedef struct {
    FILE *f[2];
    char path[2][4096];
} metrics_out;

static pt_status metrics_open(metrics_out *mo, const pt_train_cfg *cfg, int append)
{
    memset(mo, 0, sizeof *mo);
    const char *paths[2] = { NULL, cfg->metrics_path };
    char run_metrics[4096];
    if (cfg->run_dir) {
        PT_CHECK(pt_mkdirs(cfg->run_dir));
        snprintf(run_metrics, sizeof run_metrics, "%s/metrics.jsonl", cfg->run_dir);
        paths[0] = run_metrics;
    }
    for (int i = 0; i < 2; i++) {
        if (!paths[i])
            continue;
        snprintf(mo->path[i], sizeof mo->path[i], "%s", paths[i]);
        mo->f[i] = fopen(paths[i], append ? "a" : "w");
        if (!mo->f[i]) {
            pt_status st = pt_fail(PT_EIO, "cannot open metrics file %s: %s", paths[i], strerror(errno));
            for (int k = 0; k < i; k++)
                if (mo->f[k])
                    fclose(mo->f[k]);
            return st;
        }
    }
    return PT_OK;
}

static void metrics_close(metrics_out *mo)
{
    for (int i = 0; i < 2; i++)
        if (mo->f[i])
            fclose(mo->f[i]);
}

/* Writes obj as one line to every metrics file and frees it. */
static pt_status metrics_write(metrics_out *mo, cJSON *obj)
{
    char *line = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!line)
        return pt_fail(PT_ENOMEM, "out of memory writing a metrics line");
    pt_status st = PT_OK;
    for (int i = 0; i < 2; i++)
        if (mo->f[i] && (fputs(line, mo->f[i]) < 0 || fputc('\n', mo->f[i]) < 0 || fflush(mo->f[i]) != 0) &&
            st == PT_OK)
            st = pt_fail(PT_EIO, "cannot write metrics to %s: %s", mo->path[i], strerror(errno));
    free(line);
    return st;
}

static cJSON *step_json(int64_t step, const pt_step_stats *st, double step_ms, double tokens_per_s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddNumberToObject(o, "loss", st->loss);
    cJSON_AddNumberToObject(o, "lr", st->lr);
    cJSON_AddNumberToObject(o, "step_ms", step_ms);
    cJSON_AddNumberToObject(o, "tokens_per_s", tokens_per_s);
    cJSON_AddNumberToObject(o, "grad_norm", st->grad_norm);
    cJSON_AddNumberToObject(o, "clip_scale", st->clip_scale);
    cJSON_AddNumberToObject(o, "tokens", (double)st->n_tokens);
    cJSON_AddNumberToObject(o, "fwd_ms", st->fwd_s * 1e3);
    cJSON_AddNumberToObject(o, "bwd_ms", st->bwd_s * 1e3);
    cJSON_AddNumberToObject(o, "optim_ms", st->optim_s * 1e3);
    return o;
}

static cJSON *eval_json(int64_t step, const pt_eval_stats *ev)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddNumberToObject(o, "eval_loss", ev->loss);
    cJSON_AddNumberToObject(o, "eval_accuracy", ev->n_total ? (double)ev->n_correct / (double)ev->n_total : 0.0);
    cJSON_AddStringToObject(o, "eval_metric", ev->is_task ? "exact_match" : "next_token_accuracy");
    cJSON_AddNumberToObject(o, "eval_correct", (double)ev->n_correct);
    cJSON_AddNumberToObject(o, "eval_total", (double)ev->n_total);
    cJSON_AddNumberToObject(o, "eval_ms", ev->seconds * 1e3);
    return o;
}

/* ---- the loop ---- */

static pt_status loop_eval(const pt_train_ops *ops, metrics_out *mo, int64_t done, int64_t total, double elapsed,
                           pt_train_event_fn on_event, void *ev_ctx, pt_train_summary *sum)
{
    pt_eval_stats ev;
    memset(&ev, 0, sizeof ev);
    PT_CHECK(ops->eval(ops->ctx, &ev));
    PT_CHECK(metrics_write(mo, eval_json(done, &ev)));
    sum->has_eval = 1;
    sum->last_eval = ev;
    if (on_event) {
        pt_train_event e = { .kind = PT_TRAIN_EV_EVAL, .step = done, .total = total, .ev = &ev, .elapsed_s = elapsed };
        on_event(ev_ctx, &e);
    }
    return PT_OK;
}

static pt_status loop_save(const pt_train_ops *ops, int64_t done, int64_t total, double elapsed,
                           pt_train_event_fn on_event, void *ev_ctx, pt_train_summary *sum)
{
    const char *path = NULL;
    PT_CHECK(ops->save(ops->ctx, done, &path));
    snprintf(sum->last_ckpt, sizeof sum->last_ckpt, "%s", path ? path : "");
    if (on_event) {
        pt_train_event e = { .kind = PT_TRAIN_EV_CKPT, .step = done, .total = total, .ckpt_path = path,
                             .elapsed_s = elapsed };
        on_event(ev_ctx, &e);
    }
    return PT_OK;
}

static const char *nonfinite_name(double x) { return isnan(x) ? "NaN" : "Inf"; }

pt_status pt_train_loop(const pt_train_cfg *cfg, const pt_train_ops *ops, int64_t first_step,
                        pt_train_event_fn on_event, void *ev_ctx, pt_train_summary *summary)
{
    pt_train_summary local;
    pt_train_summary *sum = summary ? summary : &local;
    memset(sum, 0, sizeof *sum);
    sum->steps_done = first_step;
    if (cfg->steps < 1)
        return pt_fail(PT_EINVAL, "--steps is %lld; train at least 1 step", (long long)cfg->steps);
    if (first_step < 0 || first_step > cfg->steps)
        return pt_fail(PT_EINVAL, "the run resumes at step %lld, past --steps %lld; raise --steps to continue",
                       (long long)first_step, (long long)cfg->steps);
    metrics_out mo;
    PT_CHECK(metrics_open(&mo, cfg, first_step > 0));
    pt_status st = PT_OK;
    int64_t t0 = pt_now_ns();
    int64_t tokens = 0;
    pt_step_stats s;
    memset(&s, 0, sizeof s);
    for (int64_t step = first_step; step < cfg->steps; step++) {
        double lr = pt_lr_at(step, cfg->warmup, cfg->steps, cfg->lr, cfg->lr_min);
        memset(&s, 0, sizeof s);
        int64_t ts = pt_now_ns();
        PT_TRY(ops->step(ops->ctx, step, lr, &s), out);
        int64_t te = pt_now_ns();
        int64_t done = step + 1;
        if (!isfinite(s.loss) || !isfinite(s.grad_norm)) {
            const char *what = !isfinite(s.loss) ? "loss" : "gradient norm";
            double bad = !isfinite(s.loss) ? s.loss : s.grad_norm;
            char where[640];
            if (sum->last_ckpt[0])
                snprintf(where, sizeof where, "checkpoint %s", sum->last_ckpt);
            else
                snprintf(where, sizeof where, "%s",
                         step == 0            ? "the initial weights"
                         : step == first_step ? "the checkpoint this run resumed from"
                                              : "no checkpoint kept");
            st = pt_fail(PT_ENUMERIC,
                         "step %lld: %s is %s; the last good step was %lld (%s); lower --lr (now %g) or raise "
                         "--warmup, or check the data",
                         (long long)done, what, nonfinite_name(bad), (long long)step, where, cfg->lr);
            goto out;
        }
        double dt = pt_seconds_between(ts, te);
        double tps = dt > 0 ? (double)s.n_tokens / dt : 0;
        tokens += s.n_tokens;
        sum->steps_done = done;
        sum->final_loss = s.loss;
        PT_TRY(metrics_write(&mo, step_json(done, &s, dt * 1e3, tps)), out);
        double elapsed = pt_seconds_between(t0, pt_now_ns());
        if (on_event) {
            pt_train_event e = { .kind = PT_TRAIN_EV_STEP, .step = done, .total = cfg->steps, .st = &s,
                                 .step_ms = dt * 1e3, .tokens_per_s = tps, .elapsed_s = elapsed,
                                 .eta_s = elapsed / (double)(done - first_step) * (double)(cfg->steps - done) };
            on_event(ev_ctx, &e);
        }
        if (done == cfg->steps)
            break;
        if (cfg->stop && *cfg->stop) {
            sum->interrupted = 1;
            break;
        }
        if (ops->eval && cfg->eval_every > 0 && done % cfg->eval_every == 0)
            PT_TRY(loop_eval(ops, &mo, done, cfg->steps, elapsed, on_event, ev_ctx, sum), out);
        if (ops->save && cfg->ckpt_every > 0 && done % cfg->ckpt_every == 0)
            PT_TRY(loop_save(ops, done, cfg->steps, elapsed, on_event, ev_ctx, sum), out);
    }
    {
        double elapsed = pt_seconds_between(t0, pt_now_ns());
        if (ops->eval && !sum->interrupted)
            PT_TRY(loop_eval(ops, &mo, sum->steps_done, cfg->steps, elapsed, on_event, ev_ctx, sum), out);
        if (ops->save && sum->steps_done > first_step)
            PT_TRY(loop_save(ops, sum->steps_done, cfg->steps, elapsed, on_event, ev_ctx, sum), out);
    }
out:
    sum->seconds = pt_seconds_between(t0, pt_now_ns());
    sum->tokens_per_s = sum->seconds > 0 ? (double)tokens / sum->seconds : 0;
    metrics_close(&mo);
    return st;
}

/* ---- the single-process trainer ---- */

struct pt_trainer {
    pt_train_cfg cfg;
    pt_model_config mcfg;
    const pt_backend *be;
    pt_stream *stream;
    pt_model *model;
    pt_optim *optim;
    pt_dataset *data;
    int32_t *tokens, *targets; /* host (M*B, T) */
    int32_t *pred;             /* host (B, T) eval predictions */
    double *sumsq;             /* host (n_tensors) */
    char *run_json;            /* config.json text (also saved in checkpoints) */
    int64_t start_step;
    uint64_t data_seed;
#ifdef PT_TRAIN_HAVE_CKPT
    pt_ckpt_saver *saver;
    char ckpt_path[4096];
    char resume_note[1024];    /* why resuming did not use `latest`, or "" */
#endif
    char data_note[512];       /* the vocabulary taken from the data, or "" */
};


static pt_status check_cfg(const pt_train_cfg *c, const pt_model_config *m)
{
    if (c->steps < 1)
        return pt_fail(PT_EINVAL, "--steps is %lld; train at least 1 step", (long long)c->steps);
    if (c->micro_batches < 1 || c->micro_batches > 65536)
        return pt_fail(PT_EINVAL, "--micro-batches is %d; give 1 to 65536", c->micro_batches);
    if (c->micro_batch_size < 1 || c->micro_batch_size > 65536)
        return pt_fail(PT_EINVAL, "--micro-batch-size is %d; give 1 to 65536", c->micro_batch_size);
    if (c->seq_len < 1 || c->seq_len > m->max_seq_len)
        return pt_fail(PT_EINVAL, "--seq-len is %d; %s takes 1 to %d tokens", c->seq_len, m->name, m->max_seq_len);
    if (c->warmup < 0)
        return pt_fail(PT_EINVAL, "--warmup is %lld; give 0 or more steps", (long long)c->warmup);
    if (!(c->lr_min >= 0) || !(c->lr_min <= c->lr))
        return pt_fail(PT_EINVAL, "the final learning rate %g must be in [0, --lr %g]", c->lr_min, c->lr);
    if (c->eval_every < 0 || c->eval_batches < 0)
        return pt_fail(PT_EINVAL, "--eval-every and --eval-batches must be >= 0");
    if (c->ckpt_every < 0)
        return pt_fail(PT_EINVAL, "--ckpt-every is %lld; give 0 or more steps", (long long)c->ckpt_every);
    if ((c->ckpt_every > 0 || c->resume) && !c->ckpt_dir)
        return pt_fail(PT_EINVAL, "--ckpt-every and --resume need --ckpt-dir DIR");
    return PT_OK;
}

/* Adds o[key] = v unless o has the key (a plan's own layout numbers stay). */
static int cfg_json_num(cJSON *o, const char *key, double v)
{
    return cJSON_HasObjectItem(o, key) || cJSON_AddNumberToObject(o, key, v);
}

pt_status pt_train_cfg_to_json(const pt_train_cfg *c, struct cJSON *o)
{
    int ok = cfg_json_num(o, "seed", (double)c->seed) && cfg_json_num(o, "steps", (double)c->steps) &&
             cfg_json_num(o, "threads", c->threads) && cfg_json_num(o, "micro_batches", c->micro_batches) &&
             cfg_json_num(o, "micro_batch_size", c->micro_batch_size) && cfg_json_num(o, "seq_len", c->seq_len) &&
             cfg_json_num(o, "lr", c->lr) && cfg_json_num(o, "lr_min", c->lr_min) &&
             cfg_json_num(o, "warmup", (double)c->warmup) && cfg_json_num(o, "weight_decay", c->weight_decay) &&
             cfg_json_num(o, "grad_clip", c->grad_clip) && cfg_json_num(o, "beta1", c->beta1) &&
             cfg_json_num(o, "beta2", c->beta2) && cfg_json_num(o, "eps", c->eps) &&
             (!c->init_from || cJSON_HasObjectItem(o, "init_from") ||
              cJSON_AddStringToObject(o, "init_from", c->init_from));
    return ok ? PT_OK : pt_fail(PT_ENOMEM, "out of memory writing the run config");
}

/* The run's settings as JSON (config.json, and the run JSON of checkpoints). */
static pt_status run_json_make(const pt_trainer *t, char **out)
{
    const pt_train_cfg *c = &t->cfg;
    const pt_model_config *m = &t->mcfg;
    cJSON *o = cJSON_CreateObject(), *mj = pt_model_config_to_json(m);
    if (!o || !mj) {
        cJSON_Delete(o);
        cJSON_Delete(mj);
        return pt_fail(PT_ENOMEM, "out of memory writing the run config");
    }
    cJSON_AddItemToObject(o, "model", mj);
    cJSON_AddNumberToObject(o, "n_params", (double)pt_model_config_n_params(m));
    cJSON_AddStringToObject(o, "data", pt_dataset_name(t->data));
    if (pt_dataset_describe(t->data, o) != PT_OK) {
        cJSON_Delete(o);
        return pt_fail(PT_ENOMEM, "out of memory writing the run config");
    }
    cJSON_AddStringToObject(o, "backend", t->be->name);
    cJSON_AddNumberToObject(o, "stages", 1);
    pt_status st = pt_train_cfg_to_json(c, o);
    if (st == PT_OK && c->run_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", c->run_dir);
        st = pt_json_write_file(path, o, 0);
    }
    *out = st == PT_OK ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (st == PT_OK && !*out)
        st = pt_fail(PT_ENOMEM, "out of memory writing the run config");
    return st;
}

pt_status pt_trainer_create(const pt_train_cfg *cfg, pt_trainer **out)
{
    *out = NULL;
    pt_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return pt_fail(PT_ENOMEM, "out of memory creating the trainer");
    t->cfg = *cfg;
    t->data_seed = cfg->seed;
    const pt_train_cfg *c = &t->cfg;
    pt_status st = PT_OK;
    PT_TRY(pt_model_config_load(c->model, &t->mcfg), fail);
    PT_TRY(pt_model_config_set_head_split(&t->mcfg, c->head_split), fail);
    PT_TRY(check_cfg(c, &t->mcfg), fail);
    /* the data first: its tokenizer sets the model's vocabulary */
    PT_TRY(pt_dataset_open(c->data, t->data_seed, &t->data), fail);
    pt_dataset_fit_model(t->data, &t->mcfg, t->data_note, sizeof t->data_note);
    PT_TRY(pt_dataset_set_batch(t->data, c->micro_batches * c->micro_batch_size,
                                c->eval_batches > 0 ? c->micro_batch_size : 0, c->seq_len),
           fail);
    PT_TRY(pt_backend_get(c->backend ? c->backend : "cpu", &t->be), fail);
    PT_TRY(t->be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = c->threads }, &t->stream), fail);
    pt_model_opts mo = { .micro_batch = c->micro_batch_size, .seq_len = c->seq_len, .n_slots = 1, .recompute = 0,
                         .fused_only = 1 /* one process runs the fused backward only */ };
    PT_TRY(pt_model_create(&t->mcfg, 0, pt_model_n_layers(&t->mcfg) - 1, &mo, t->be, t->stream, &t->model), fail);
    PT_TRY(pt_model_init_weights(t->model, c->seed), fail);
    if (c->init_from)
        PT_TRY(pt_model_load_hf_safetensors(t->model, c->init_from), fail);
    pt_adamw_cfg ac = { .lr = (float)c->lr, .beta1 = (float)c->beta1, .beta2 = (float)c->beta2, .eps = (float)c->eps,
                        .weight_decay = (float)c->weight_decay, .grad_clip = (float)c->grad_clip };
    PT_TRY(pt_optim_create(t->model, &ac, &t->optim), fail);

    if (c->resume) {
#ifdef PT_TRAIN_HAVE_CKPT
        pt_train_state ts;
        memset(&ts, 0, sizeof ts);
        pt_model *models[1] = { t->model };
        pt_optim *optims[1] = { t->optim };
        PT_TRY(pt_ckpt_check_data(c->ckpt_dir, t->data), fail);
        pt_ckpt_load_info li;
        memset(&li, 0, sizeof li);
        PT_TRY(pt_ckpt_load_ex(c->ckpt_dir, models, optims, 1, &ts, t->be, t->stream, &li), fail);
        snprintf(t->resume_note, sizeof t->resume_note, "%s", li.note);
        free((char *)ts.run_json);
        pt_dataset_set_seed(t->data, ts.seed);
        t->start_step = ts.step;
        t->data_seed = ts.seed;
        pt_optim_set_steps_done(t->optim, ts.step);
#else
        st = pt_fail(PT_ENOTSUP, "--resume needs the checkpoint module, which this build lacks");
        goto fail;
#endif
    }
    size_t rows = (size_t)c->micro_batches * (size_t)c->micro_batch_size, T = (size_t)c->seq_len;
    t->tokens = malloc(rows * T * sizeof(int32_t));
    t->targets = malloc(rows * T * sizeof(int32_t));
    t->pred = malloc((size_t)c->micro_batch_size * T * sizeof(int32_t));
    t->sumsq = malloc((size_t)pt_model_n_tensors(t->model) * sizeof(double));
    if (!t->tokens || !t->targets || !t->pred || !t->sumsq) {
        st = pt_fail(PT_ENOMEM, "out of memory for %zu x %zu host batch buffers", rows, T);
        goto fail;
    }
    if (c->run_dir)
        PT_TRY(pt_mkdirs(c->run_dir), fail);
    PT_TRY(run_json_make(t, &t->run_json), fail);
    if (c->ckpt_dir) {
#ifdef PT_TRAIN_HAVE_CKPT
        PT_TRY(pt_ckpt_saver_create(c->ckpt_dir, 3, 1, 2, &t->saver), fail);
        pt_ckpt_saver_set_device(t->saver, t->be, t->stream);
        /* the staging buffer now, so the first save stalls training no longer than later ones */
        PT_TRY(pt_ckpt_saver_reserve(t->saver, &t->model, &t->optim, 1), fail);
#else
        st = pt_fail(PT_ENOTSUP, "--ckpt-dir needs the checkpoint module, which this build lacks");
        goto fail;
#endif
    }
    *out = t;
    return PT_OK;
fail:
    pt_trainer_destroy(t);
    return st;
}

void pt_trainer_destroy(pt_trainer *t)
{
    if (!t)
        return;
#ifdef PT_TRAIN_HAVE_CKPT
    pt_ckpt_saver_destroy(t->saver);
#endif
    free(t->run_json);
    free(t->sumsq);
    free(t->pred);
    free(t->targets);
    free(t->tokens);
    pt_dataset_close(t->data);
    pt_optim_destroy(t->optim);
    pt_model_destroy(t->model);
    if (t->be && t->stream)
        t->be->stream_destroy(t->stream);
    free(t);
}

pt_status pt_train_step_single(pt_trainer *t, int64_t step, double lr, pt_step_stats *out)
{
    const pt_train_cfg *c = &t->cfg;
    const pt_backend *be = t->be;
    pt_model *m = t->model;
    const int M = c->micro_batches, B = c->micro_batch_size, T = c->seq_len;
    const size_t mb = (size_t)B * (size_t)T;
    memset(out, 0, sizeof *out);
    out->lr = (float)lr;
    out->clip_scale = 1.0f;
    out->n_tokens = (int64_t)M * (int64_t)mb;

    /* The whole global batch first: the loss scale needs its count of targets. */
    for (int j = 0; j < M; j++)
        PT_CHECK(pt_dataset_batch(t->data, PT_SPLIT_TRAIN, step, (int64_t)j * B, B, T, t->tokens + j * mb,
                                  t->targets + j * mb));
    int64_t n_targets = 0;
    for (size_t i = 0; i < (size_t)M * mb; i++)
        n_targets += t->targets[i] >= 0;
    out->n_targets = n_targets;
    float loss_scale = n_targets > 0 ? 1.0f / (float)n_targets : 0.0f;

    PT_CHECK(pt_model_zero_grads(m));
    double loss_sum = 0;
    for (int j = 0; j < M; j++) {
        int64_t t0 = pt_now_ns();
        PT_CHECK(be->memcpy_h2d(t->stream, pt_model_slot_tokens(m, 0), t->tokens + j * mb, mb * sizeof(int32_t)));
        PT_CHECK(be->memcpy_h2d(t->stream, pt_model_slot_targets(m, 0), t->targets + j * mb, mb * sizeof(int32_t)));
        PT_CHECK(pt_model_forward(m, 0));
        double ls = 0;
        int64_t nt = 0;
        PT_CHECK(pt_model_slot_loss(m, 0, &ls, &nt));
        loss_sum += ls;
        int64_t t1 = pt_now_ns();
        PT_CHECK(pt_model_backward(m, 0, loss_scale));
        PT_CHECK(be->stream_sync(t->stream));
        int64_t t2 = pt_now_ns();
        out->fwd_s += pt_seconds_between(t0, t1);
        out->bwd_s += pt_seconds_between(t1, t2);
    }
    int64_t t3 = pt_now_ns();
    PT_CHECK(pt_model_reduce_tied_grads(m));
    out->loss = n_targets > 0 ? loss_sum / (double)n_targets : 0.0;
    /* Global norm by the rule of optim.h: per-tensor sums in tensor order, summed in double. */
    PT_CHECK(pt_grad_sumsq(m, t->sumsq));
    double total = 0;
    for (int i = 0; i < pt_model_n_tensors(m); i++)
        total += t->sumsq[i];
    out->grad_norm = sqrt(total);
    if (isfinite(out->loss) && isfinite(out->grad_norm)) {
        out->clip_scale = pt_clip_scale(out->grad_norm, (float)c->grad_clip);
        PT_CHECK(pt_optim_step(t->optim, (float)lr, out->clip_scale));
        PT_CHECK(be->stream_sync(t->stream));
        out->applied = 1;
    }
    out->optim_s = pt_seconds_between(t3, pt_now_ns());
    return PT_OK;
}

pt_status pt_eval_score_slot(pt_model *m, int slot, const pt_dataset *data,
                             const int32_t *targets, int B, int T, int32_t *pred,
                             pt_eval_stats *acc)
{
    double ls = 0;
    int64_t nt = 0;
    PT_CHECK(pt_model_slot_loss(m, slot, &ls, &nt));
    PT_CHECK(pt_model_slot_predict(m, slot, pred));
    int64_t correct = 0, total = 0;
    pt_dataset_score(data, targets, pred, B, T, &correct, &total);
    acc->is_task = pt_dataset_is_task(data);
    acc->loss += ls;
    acc->n_targets += nt;
    acc->n_correct += correct;
    acc->n_total += total;
    return PT_OK;
}

pt_status pt_train_eval_single(pt_trainer *t, pt_eval_stats *out)
{
    const pt_train_cfg *c = &t->cfg;
    const pt_backend *be = t->be;
    pt_model *m = t->model;
    const int B = c->micro_batch_size, T = c->seq_len;
    const size_t mb = (size_t)B * (size_t)T;
    memset(out, 0, sizeof *out);
    out->is_task = pt_dataset_is_task(t->data);
    int64_t t0 = pt_now_ns();
    for (int k = 0; k < c->eval_batches; k++) {
        /* eval data steps 0.. every time: each eval of a run scores the same held-out problems */
        PT_CHECK(pt_dataset_batch(t->data, PT_SPLIT_EVAL, k, 0, B, T, t->tokens, t->targets));
        PT_CHECK(be->memcpy_h2d(t->stream, pt_model_slot_tokens(m, 0), t->tokens, mb * sizeof(int32_t)));
        PT_CHECK(be->memcpy_h2d(t->stream, pt_model_slot_targets(m, 0), t->targets, mb * sizeof(int32_t)));
        pt_status st = pt_model_forward(m, 0);
        if (st == PT_OK)
            st = pt_eval_score_slot(m, 0, t->data, t->targets, B, T, t->pred, out);
        pt_status rs = pt_model_slot_release(m, 0);
        PT_CHECK(st);
        PT_CHECK(rs);
    }
    out->loss = out->n_targets > 0 ? out->loss / (double)out->n_targets : 0.0;
    out->seconds = pt_seconds_between(t0, pt_now_ns());
    return PT_OK;
}

static pt_status ops_step(void *ctx, int64_t step, double lr, pt_step_stats *out)
{
    return pt_train_step_single(ctx, step, lr, out);
}

static pt_status ops_eval(void *ctx, pt_eval_stats *out) { return pt_train_eval_single(ctx, out); }

#ifdef PT_TRAIN_HAVE_CKPT
static pt_status ops_save(void *ctx, int64_t steps_done, const char **path)
{
    pt_trainer *t = ctx;
    pt_model *models[1] = { t->model };
    pt_optim *optims[1] = { t->optim };
    pt_train_state ts = { .step = steps_done, .data_step = steps_done, .seed = t->data_seed, .run_json = t->run_json };
    PT_CHECK(pt_ckpt_save(t->saver, NULL, models, optims, 1, &ts));
    pt_ckpt_save_info si;
    pt_ckpt_saver_info(t->saver, &si);
    snprintf(t->ckpt_path, sizeof t->ckpt_path, "%s/step_%06lld", t->cfg.ckpt_dir, (long long)steps_done);
    if (si.waited_for_step >= 0) /* the user should know a save stalled training */
        snprintf(t->ckpt_path + strlen(t->ckpt_path), sizeof t->ckpt_path - strlen(t->ckpt_path),
                 " (waited for the save of step %lld to finish first)", (long long)si.waited_for_step);
    *path = t->ckpt_path;
    /* the last one of a run (finished or stopped) is durable before the run reports success */
    if (steps_done == t->cfg.steps || (t->cfg.stop && *t->cfg.stop))
        PT_CHECK(pt_ckpt_saver_wait(t->saver));
    return PT_OK;
}
#endif

void pt_trainer_ops(pt_trainer *t, pt_train_ops *ops)
{
    memset(ops, 0, sizeof *ops);
    ops->ctx = t;
    ops->step = ops_step;
    ops->eval = t->cfg.eval_batches > 0 ? ops_eval : NULL;
#ifdef PT_TRAIN_HAVE_CKPT
    ops->save = t->saver ? ops_save : NULL;
#endif
}

const char *pt_trainer_resume_note(const pt_trainer *t) { return t->resume_note; }
const char *pt_trainer_data_note(const pt_trainer *t) { return t->data_note; }

int64_t pt_trainer_start_step(const pt_trainer *t) { return t->start_step; }
pt_model *pt_trainer_model(pt_trainer *t) { return t->model; }
pt_optim *pt_trainer_optim(pt_trainer *t) { return t->optim; }
pt_dataset *pt_trainer_dataset(pt_trainer *t) { return t->data; }
