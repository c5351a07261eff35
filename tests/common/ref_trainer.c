/* tests/common/ref_trainer.c — the single-process reference trainer (ref_trainer.h): one
 * pt_model holding every layer, its AdamW state, the data set and a hand-written step. It was the
 * library's one-process path until the runtime executed every run (issue 16); the tests keep it as
 * the plain reading of "one optimizer step" that the runtime must match bit for bit. */
#include "ref_trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/ckpt.h"
#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/timeutil.h"

struct ref_trainer {
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
    pt_ckpt_saver *saver;
    char ckpt_path[4096];
    char resume_note[1024];    /* why resuming did not use `latest`, or "" */
    char data_note[512];       /* the vocabulary taken from the data, or "" */
};


/* The run's settings as JSON (config.json, and the run JSON of checkpoints). */
static pt_status run_json_make(const ref_trainer *t, char **out)
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

pt_status ref_trainer_create(const pt_train_cfg *cfg, ref_trainer **out)
{
    *out = NULL;
    ref_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return pt_fail(PT_ENOMEM, "out of memory creating the trainer");
    t->cfg = *cfg;
    t->data_seed = cfg->seed;
    const pt_train_cfg *c = &t->cfg;
    pt_status st = PT_OK;
    PT_TRY(pt_model_config_load(c->model, &t->mcfg), fail);
    PT_TRY(pt_model_config_set_head_split(&t->mcfg, c->head_split), fail);
    t->mcfg.head_chunk = pt_head_chunk_resolve(c->head_chunk, &t->mcfg, 1, 0);
    PT_TRY(pt_train_cfg_check(c, &t->mcfg), fail);
    /* the data first: its tokenizer sets the model's vocabulary */
    PT_TRY(pt_dataset_open(c->data, t->data_seed, &t->data), fail);
    pt_dataset_fit_model(t->data, &t->mcfg, t->data_note, sizeof t->data_note);
    PT_TRY(pt_dataset_set_batch(t->data, c->micro_batches * c->micro_batch_size,
                                c->eval_batches > 0 ? c->micro_batch_size : 0, c->seq_len),
           fail);
    PT_TRY(pt_backend_get(c->backend ? c->backend : "cpu", &t->be), fail);
    PT_TRY(t->be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = c->threads,
                                                    .fp32_products = pt_train_cfg_precision(c) == PT_PRECISION_FP32 },
                                &t->stream),
           fail);
    pt_model_opts mo = { .micro_batch = c->micro_batch_size, .seq_len = c->seq_len, .n_slots = 1, .recompute = 0,
                         .fused_only = 1 /* one process runs the fused backward only */,
                         .precision = pt_train_cfg_precision(c) };
    PT_TRY(pt_model_create(&t->mcfg, 0, pt_model_n_layers(&t->mcfg) - 1, &mo, t->be, t->stream, &t->model), fail);
    PT_TRY(pt_model_init_weights(t->model, c->seed), fail);
    if (c->init_from)
        PT_TRY(pt_model_load_hf_safetensors(t->model, c->init_from), fail);
    pt_adamw_cfg ac = { .lr = (float)c->lr, .beta1 = (float)c->beta1, .beta2 = (float)c->beta2, .eps = (float)c->eps,
                        .weight_decay = (float)c->weight_decay, .grad_clip = (float)c->grad_clip };
    PT_TRY(pt_optim_create(t->model, &ac, &t->optim), fail);

    if (c->resume) {
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
        PT_TRY(pt_ckpt_saver_create(c->ckpt_dir, 3, 1, 2, &t->saver), fail);
        pt_ckpt_saver_set_device(t->saver, t->be, t->stream);
        /* the staging buffer now, so the first save stalls training no longer than later ones */
        PT_TRY(pt_ckpt_saver_reserve(t->saver, &t->model, &t->optim, 1), fail);
    }
    *out = t;
    return PT_OK;
fail:
    ref_trainer_destroy(t);
    return st;
}

void ref_trainer_destroy(ref_trainer *t)
{
    if (!t)
        return;
    pt_ckpt_saver_destroy(t->saver);
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

pt_status ref_train_step(ref_trainer *t, int64_t step, double lr, pt_step_stats *out)
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

pt_status ref_train_eval(ref_trainer *t, pt_eval_stats *out)
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
    return ref_train_step(ctx, step, lr, out);
}

static pt_status ops_eval(void *ctx, pt_eval_stats *out) { return ref_train_eval(ctx, out); }

static pt_status ops_save(void *ctx, int64_t steps_done, int64_t *committed, const char **path)
{
    ref_trainer *t = ctx;
    pt_model *models[1] = { t->model };
    pt_optim *optims[1] = { t->optim };
    pt_train_state ts = { .step = steps_done, .data_step = steps_done, .seed = t->data_seed, .run_json = t->run_json };
    pt_ckpt_save_info prev;
    pt_ckpt_saver_info(t->saver, &prev);
    PT_CHECK(pt_ckpt_save(t->saver, NULL, models, optims, 1, &ts)); /* the previous one is durable now */
    int64_t c = prev.step;
    /* the last one of a run (finished or stopped) is durable before the run reports success */
    if (steps_done == t->cfg.steps || (t->cfg.stop && *t->cfg.stop)) {
        PT_CHECK(pt_ckpt_saver_wait(t->saver));
        c = steps_done;
    }
    *committed = c;
    *path = NULL;
    if (c >= 0) {
        snprintf(t->ckpt_path, sizeof t->ckpt_path, "%s/step_%06lld", t->cfg.ckpt_dir, (long long)c);
        *path = t->ckpt_path;
    }
    return PT_OK;
}

void ref_trainer_ops(ref_trainer *t, pt_train_ops *ops)
{
    memset(ops, 0, sizeof *ops);
    ops->ctx = t;
    ops->step = ops_step;
    ops->eval = t->cfg.eval_batches > 0 ? ops_eval : NULL;
    ops->save = t->saver ? ops_save : NULL;
}

const char *ref_trainer_resume_note(const ref_trainer *t) { return t->resume_note; }
const char *ref_trainer_data_note(const ref_trainer *t) { return t->data_note; }

int64_t ref_trainer_start_step(const ref_trainer *t) { return t->start_step; }
pt_model *ref_trainer_model(ref_trainer *t) { return t->model; }
pt_optim *ref_trainer_optim(ref_trainer *t) { return t->optim; }
pt_dataset *ref_trainer_dataset(ref_trainer *t) { return t->data; }
