/* The training loop over any step implementation (pt_train_loop), the settings of a run
 * (defaults, checks, their JSON) and the one eval scorer (pipetrain/train.h). */
#include "pipetrain/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/timeutil.h"

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

pt_status pt_train_cfg_check(const pt_train_cfg *c, const pt_model_config *m)
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
