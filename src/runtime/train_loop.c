/* The training loop (pipetrain/train_loop.h): learning rate, metrics lines, evals, checkpoints
 * and the NaN check around the step of pt_train_ops (the runtime's, in train_main.c). */
#include "pipetrain/train_loop.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/timeutil.h"

/* ---- metrics ---- */

typedef struct {
    FILE *f[2];
    char path[2][4096];
} metrics_out;

/* A run resumed after step `keep` (an automatic restart, or --resume after a crash) may find lines
 * of the steps after it, which it is about to run again: drop them, so the file keeps one line per
 * step and eval (the newest run's). Lines without a step are kept. Rewritten atomically. */
static pt_status metrics_drop_after(const char *path, int64_t keep)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return PT_OK; /* nothing written yet */
    char *out = NULL, line[16384];
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    int dropped = 0;
    while (m && fgets(line, sizeof line, f)) {
        const char *at = strstr(line, "\"step\":");
        if (at && strtoll(at + 7, NULL, 10) > keep) {
            dropped = 1;
            continue;
        }
        fputs(line, m);
    }
    fclose(f);
    if (!m)
        return pt_fail(PT_ENOMEM, "out of memory reading %s", path);
    fclose(m);
    pt_status st = dropped ? pt_write_file_atomic(path, out, len) : PT_OK;
    free(out);
    return st;
}

static pt_status metrics_open(metrics_out *mo, const pt_train_cfg *cfg, int64_t resume_step)
{
    int append = resume_step > 0;
    memset(mo, 0, sizeof *mo);
    const char *paths[2] = { NULL, cfg->metrics_path };
    char run_metrics[4096];
    if (cfg->run_dir) {
        PT_CHECK(pt_mkdirs(cfg->run_dir));
        snprintf(run_metrics, sizeof run_metrics, "%s/metrics.jsonl", cfg->run_dir);
        paths[0] = run_metrics;
    }
    for (int i = 0; i < 2 && append; i++)
        if (paths[i])
            PT_CHECK(metrics_drop_after(paths[i], resume_step));
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

/* The first step after an automatic restart: its recovery's phases, in seconds, on the wall clock
 * the launcher and the ranks share: teardown (the failure seen -> the ranks started again),
 * startup (-> the checkpoint load begins: exec, rendezvous, plan, model), reload (the load), and
 * first_step (-> this step's end: the transport's and caches' warm-up, and the step). */
static void recovery_json(cJSON *o, const pt_train_cfg *c, int64_t now)
{
    cJSON *r = cJSON_AddObjectToObject(o, "recovery");
    if (!r)
        return;
    int64_t t[5] = { c->restart_failed_at_ns, c->restart_relaunch_at_ns, c->restore_begin_ns, c->restore_end_ns, now };
    cJSON_AddNumberToObject(r, "failure_wall_ns", (double)c->restart_failed_at_ns); /* when it was seen */
    if (c->restore_source)
        cJSON_AddStringToObject(r, "reload_from", c->restore_source);
    static const char *const names[4] = { "teardown_s", "startup_s", "reload_s", "first_step_s" };
    for (int i = 0; i < 4; i++)
        if (t[i] > 0 && t[i + 1] > 0)
            cJSON_AddNumberToObject(r, names[i], 1e-9 * (double)(t[i + 1] - t[i]));
}

static cJSON *step_json(int64_t step, const pt_step_stats *st, double step_ms, double tokens_per_s,
                        const pt_train_cfg *cfg, double recovery_s, int64_t now)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (cfg->restart_count > 0)
        cJSON_AddNumberToObject(o, "restart_count", cfg->restart_count);
    if (recovery_s > 0) {
        cJSON_AddNumberToObject(o, "recovery_s", recovery_s);
        recovery_json(o, cfg, now);
    }
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
    cJSON_AddNumberToObject(o, "exposed_comm_ms", st->exposed_comm_s * 1e3);
    cJSON_AddNumberToObject(o, "comm_wait_ms", st->comm_wait_s * 1e3);
    if (st->tp_comm_s > 0)
        cJSON_AddNumberToObject(o, "tp_comm_ms", st->tp_comm_s * 1e3);
    if (st->snapshot_s > 0) { /* this rank's (rank 0's in a pipeline) */
        cJSON *sn = cJSON_AddObjectToObject(o, "snapshot");
        if (sn) {
            cJSON_AddNumberToObject(sn, "stall_ms", st->snapshot_s * 1e3);
            cJSON_AddNumberToObject(sn, "waited_ms", st->snapshot_wait_s * 1e3);
            if (st->snapshot_write_s > 0)
                cJSON_AddNumberToObject(sn, "prev_write_ms", st->snapshot_write_s * 1e3);
            if (st->snapshot_copy_s > 0)
                cJSON_AddNumberToObject(sn, "prev_copy_ms", st->snapshot_copy_s * 1e3);
        }
    }
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
    int64_t committed = -1;
    PT_CHECK(ops->save(ops->ctx, done, &committed, &path));
    if (committed < 0 || !path)
        return PT_OK; /* being written; said once it is committed */
    snprintf(sum->last_ckpt, sizeof sum->last_ckpt, "%s", path);
    if (on_event) {
        pt_train_event e = { .kind = PT_TRAIN_EV_CKPT, .step = committed, .total = total, .ckpt_path = path,
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
    PT_CHECK(metrics_open(&mo, cfg, first_step));
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
        double recovery_s = 0;
        int64_t wall = pt_wall_ns();
        if (step == first_step && cfg->restart_failed_at_ns > 0) {
            recovery_s = 1e-9 * (double)(wall - cfg->restart_failed_at_ns);
            if (recovery_s <= 0)
                recovery_s = 1e-9;
        }
        PT_TRY(metrics_write(&mo, step_json(done, &s, dt * 1e3, tps, cfg, recovery_s, wall)), out);
        double elapsed = pt_seconds_between(t0, pt_now_ns());
        if (on_event) {
            pt_train_event e = { .kind = PT_TRAIN_EV_STEP, .step = done, .total = cfg->steps, .st = &s,
                                 .step_ms = dt * 1e3, .tokens_per_s = tps, .elapsed_s = elapsed, .recovery_s = recovery_s,
                                 .eta_s = elapsed / (double)(done - first_step) * (double)(cfg->steps - done) };
            on_event(ev_ctx, &e);
        }
        if (done == cfg->steps)
            break;
        if (cfg->stop) {
            /* every rank asks, every step, so the ranks stop after the same one whichever of them
             * got the signal (a rank that did not still finishes this step's pipeline with the others) */
            int why = (int)*cfg->stop;
            if (ops->agree_stop)
                PT_TRY(ops->agree_stop(ops->ctx, why, &why), out);
            if (why) {
                sum->interrupted = 1;
                sum->stop_signal = why;
                break;
            }
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
        if (ops->save && sum->steps_done > first_step && !(sum->interrupted && cfg->no_save_on_stop))
            PT_TRY(loop_save(ops, sum->steps_done, cfg->steps, elapsed, on_event, ev_ctx, sum), out);
    }
out:
    sum->seconds = pt_seconds_between(t0, pt_now_ns());
    sum->tokens_per_s = sum->seconds > 0 ? (double)tokens / sum->seconds : 0;
    metrics_close(&mo);
    return st;
}
