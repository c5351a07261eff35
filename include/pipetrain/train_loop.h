/* pipetrain/train_loop.h — the training loop: it drives a step function given as pt_train_ops
 * (the pipeline runtime's, src/runtime/train_main.c; tests give scripted ops or the reference
 * trainer's) with the learning-rate schedule, progress events, evals, metrics, checkpoints and
 * the NaN check. Part of the runtime module (src/runtime/train_loop.c).
 *
 *     pt_train_cfg cfg;
 *     pt_train_cfg_defaults(&cfg);
 *     cfg.run_dir = "runs/demo";
 *     pt_train_ops ops = { .ctx = my_ctx, .step = my_step, .eval = my_eval };
 *     pt_train_summary sum;
 *     PT_CHECK(pt_train_loop(&cfg, &ops, 0, print_progress, NULL, &sum));
 *
 * Files a run writes into its run directory: metrics.jsonl (one JSON object per line: per step
 * {"step","loss","lr","step_ms","tokens_per_s","grad_norm",...}, per eval
 * {"step","eval_loss","eval_accuracy",...}); see docs/training.md. (config.json is written by
 * the runtime's train main from pt_train_cfg_to_json.)
 *
 * Library code: nothing here prints; progress goes to the caller's pt_train_event_fn.
 */
#ifndef PIPETRAIN_TRAIN_LOOP_H
#define PIPETRAIN_TRAIN_LOOP_H

#include <stdint.h>

#include "pipetrain/status.h"
#include "pipetrain/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The step, eval and checkpoint behind the loop. ctx is passed back to each. */
typedef struct pt_train_ops {
    void *ctx;
    /* One optimizer step: data step `step` (0-based), learning rate `lr`. Must not apply an update
     * when the loss or gradient norm is not finite (stats->applied = 0). */
    pt_status (*step)(void *ctx, int64_t step, double lr, pt_step_stats *out);
    /* Evaluation; may be NULL. */
    pt_status (*eval)(void *ctx, pt_eval_stats *out);
    /* Checkpoint after `steps_done` steps; may be NULL. A save may finish in the background:
     * *committed (-1 when none) is the step of the newest checkpoint known durable when the call
     * returns (this one, or an earlier one the save waited for; the last save of a run waits for
     * itself) and *path (borrowed) names it, so "checkpoint after step N" is only ever said of a
     * checkpoint already renamed into place. */
    pt_status (*save)(void *ctx, int64_t steps_done, int64_t *committed, const char **path);
    /* After every step but the last, when cfg->stop is set: `local` is this process's *cfg->stop;
     * *agreed becomes the stop reason every rank of the job shares (0: go on), so that all ranks
     * stop after the same step, whichever of them was signalled. A collective in a job of several
     * ranks (bounded by the comm timeout); may be NULL (one process: *agreed = local). */
    pt_status (*agree_stop)(void *ctx, int local, int *agreed);
} pt_train_ops;

typedef enum pt_train_event_kind {
    PT_TRAIN_EV_STEP,  /* after every step */
    PT_TRAIN_EV_EVAL,  /* after an eval */
    PT_TRAIN_EV_CKPT,  /* a checkpoint is durable (committed): step = its step, ckpt_path its directory */
    PT_TRAIN_EV_KIND_COUNT
} pt_train_event_kind;

typedef struct pt_train_event {
    pt_train_event_kind kind;
    int64_t step;            /* steps done (1-based count) */
    int64_t total;           /* steps in the run */
    const pt_step_stats *st; /* PT_TRAIN_EV_STEP */
    const pt_eval_stats *ev; /* PT_TRAIN_EV_EVAL */
    const char *ckpt_path;   /* PT_TRAIN_EV_CKPT (may be NULL) */
    double recovery_s;       /* PT_TRAIN_EV_STEP: > 0 on the first step after an automatic restart: seconds
                                from the failure to this step's end */
    double step_ms;          /* this step's wall time */
    double tokens_per_s;     /* this step's throughput */
    double elapsed_s;        /* since the loop started */
    double eta_s;            /* estimated time to the end */
} pt_train_event;

typedef void (*pt_train_event_fn)(void *ctx, const pt_train_event *ev);

typedef struct pt_train_summary {
    int64_t steps_done;
    double final_loss;      /* loss of the last step */
    double seconds;         /* wall time of the loop */
    double tokens_per_s;    /* tokens processed / seconds */
    int has_eval;
    pt_eval_stats last_eval;
    char last_ckpt[512];    /* path of the last checkpoint ("" if none) */
    int interrupted;        /* 1 when cfg->stop ended the run early */
    int stop_signal;        /* then the agreed reason (the signal number: SIGINT, SIGTERM) */
} pt_train_summary;

/* Runs steps first_step .. cfg->steps-1 through ops: learning rate from pt_lr_at (cfg's warmup,
 * steps, lr, lr_min), a metrics line per step to <run_dir>/metrics.jsonl (the directory is created
 * if missing) and cfg->metrics_path (appended to when first_step > 0, else created), an eval every
 * cfg->eval_every steps and at the end, a checkpoint every cfg->ckpt_every steps and at the end
 * (when ops->save; a stop through cfg->stop skips the final eval, and the final checkpoint too with
 * cfg->no_save_on_stop). on_event (may be NULL) is called on the caller's thread. A NaN or Inf loss or gradient norm stops the run with
 * PT_ENUMERIC: "step N: loss is NaN; the last good step was N-1 (checkpoint ...); lower --lr ...".
 * summary may be NULL. Blocks for the whole run. */
pt_status pt_train_loop(const pt_train_cfg *cfg, const pt_train_ops *ops, int64_t first_step,
                        pt_train_event_fn on_event, void *ev_ctx, pt_train_summary *summary);

#ifdef __cplusplus
}
#endif
#endif
