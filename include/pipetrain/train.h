/* pipetrain/train.h — the settings of a run and what a training step reports.
 *
 * pt_train_cfg holds every setting of `pipetrain train` (defaults from pt_train_cfg_defaults,
 * checked by pt_train_cfg_check, written to config.json by pt_train_cfg_to_json); pt_step_stats and
 * pt_eval_stats are what one step and one eval report. The loop that drives a run over them is the
 * runtime's (pipetrain/train_loop.h): every run's step is the pipeline runtime's
 * (pipetrain/runtime.h: pt_runtime_train_main, one process being a P = 1 schedule), and
 * tests/common/ref_trainer.h keeps a hand-written single-process step as the reference the runtime
 * must match bit for bit.
 *
 * A step of the global batch (M micro-batches of B sequences of T tokens, per replica): gradients
 * zeroed; micro-batch j takes samples [j*B, +B) of data step `step` (pipetrain/data.h), forward and
 * backward with loss scale 1 / (targets >= 0 in the whole global batch), so the gradient is that of
 * the mean loss over the global batch whatever M is; then the tied-weight reduction, the global
 * gradient norm (optim.h rule), clipping, and one AdamW step at the scheduled learning rate.
 * On the CPU backend the same configuration and seed give the same bits, run after run.
 *
 * Library code: nothing here prints.
 */
#ifndef PIPETRAIN_TRAIN_H
#define PIPETRAIN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "pipetrain/data.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PT_HEAD_CHUNK_OFF (-1) /* pt_train_cfg.head_chunk: the whole head at once */

typedef struct pt_train_cfg {
    const char *model;        /* preset name or JSON config (pt_model_config_load) */
    const char *data;         /* token file, or NULL / "builtin[:sort|:add]" */
    const char *init_from;    /* Hugging Face GPT-2 safetensors to start from, or NULL */
    const char *run_dir;      /* where config.json and metrics.jsonl go (created); NULL: no files */
    const char *metrics_path; /* a second copy of metrics.jsonl, or NULL */
    const char *backend;      /* "cpu" (default) or "cuda" */
    const char *precision;    /* "fp32" or "bf16" (model_config.h pt_precision); NULL: the backend's default,
                               * bf16 on cuda, fp32 on cpu (pt_train_cfg_precision) */
    uint64_t seed;
    int64_t steps;            /* optimizer steps in the whole run */
    int threads;              /* CPU threads (<= 0: all cores) */
    int head_split;           /* > 0: the LM head as this many vocabulary-shard layers (model_config.h);
                               * 0: the model config's; PT_HEAD_SPLIT_AUTO (partition.h): the pipeline's
                               * planner chooses (one process keeps the config's) */
    int head_chunk;           /* the LM head's rows at a time (model_config.h head_chunk): 0 auto
                               * (pt_model_head_chunk_auto, the default), PT_HEAD_CHUNK_OFF all at once,
                               * > 0 that many rows */
    int micro_batches;        /* M: gradient accumulation steps per optimizer step */
    int micro_batch_size;     /* B */
    int seq_len;              /* T */
    double lr, lr_min;        /* peak and final learning rate */
    int64_t warmup;           /* linear warmup steps */
    double weight_decay, grad_clip, beta1, beta2, eps;
    int64_t eval_every;       /* steps between evals (0: only at the end) */
    int eval_batches;         /* eval micro-batches of B sequences each */
    const char *ckpt_dir;     /* checkpoint root, or NULL */
    int64_t ckpt_every;       /* steps between checkpoints (0: only at the end when ckpt_dir is set) */
    int resume;               /* 1: continue from the newest checkpoint in ckpt_dir */
    int64_t snapshot_every;   /* > 0: an in-memory snapshot every this many steps (pipetrain/snapshot.h); a
                                 restarted run (restart_count > 0) then resumes from the newest one when it
                                 is newer than the disk checkpoint. Needs ckpt_dir */
    const char *snapshot_dir; /* the node's snapshot store (NULL: /dev/shm/pipetrain-UID/<ckpt_dir's hash>) */
    /* Optional (NULL: none). When *stop becomes non-zero (a SIGINT/SIGTERM handler sets it to the
     * signal's number), the loop ends after the step in progress, writes a checkpoint (when ops->save
     * and not no_save_on_stop) and returns PT_OK with summary->interrupted = 1. In a job of several
     * ranks every rank must pass one and ops->agree_stop makes them stop after the same step. */
    volatile sig_atomic_t *stop;
    int no_save_on_stop;      /* 1: a stop writes no checkpoint (--no-save-on-signal) */
    int restart_count;        /* automatic restarts before this run (train/launch --max-restarts): every
                                 metrics line says it when > 0 */
    int64_t restart_failed_at_ns; /* CLOCK_REALTIME ns of the failure the run restarts after (0: none): the
                                     first step's line and event report the recovery time */
    /* the recovery's phases on the same clock (0: unknown), for the first step's "recovery" object:
     * when the launcher started the ranks again, and when this run's checkpoint load began and
     * ended (set by the training job; the loop reads them) */
    int64_t restart_relaunch_at_ns, restore_begin_ns, restore_end_ns;
    const char *restore_source; /* where the resumed state came from: "memory", "buddy", "disk" (NULL: unknown) */
} pt_train_cfg;

/* Fills the defaults of `pipetrain train` with no arguments: gpt2-tiny on the built-in task. */
void pt_train_cfg_defaults(pt_train_cfg *c);

/* The precision c trains in: c->precision, or the backend's default (bf16 on cuda, fp32 otherwise).
 * An unknown name reads as fp32; pt_train_cfg_check refuses it. */
pt_precision pt_train_cfg_precision(const pt_train_cfg *c);

/* The model config's head_chunk for --head-chunk's value arg (pt_train_cfg.head_chunk: 0 auto,
 * PT_HEAD_CHUNK_OFF, or rows) on model m, whose head split is final, over tp tensor-parallel
 * ranks. Auto is pt_model_head_chunk_auto, and 0 (whole) when two_phase: a pipeline whose schedule
 * runs every forward before any backward (pt_sched_forwards_first), where the loss gradient made
 * in the forward would lengthen the forward phase. What train, its one-process reference and plan
 * all use. Pure. */
int pt_head_chunk_resolve(int arg, const pt_model_config *m, int tp, int two_phase);

/* Checks the settings of c against the model config m (steps >= 1, M and B in 1..65536, T in
 * 1..m->max_seq_len, warmup >= 0, lr_min in [0, lr], eval/ckpt counts >= 0, ckpt_every/resume
 * with ckpt_dir): PT_OK or PT_EINVAL naming the option and what to give. Does not allocate. */
pt_status pt_train_cfg_check(const pt_train_cfg *c, const pt_model_config *m);

struct cJSON; /* cjson/cJSON.h */

/* Adds the settings of c a run's config.json records (seed, steps, threads, micro_batches,
 * micro_batch_size, seq_len, lr, lr_min, warmup, weight_decay, grad_clip, beta1, beta2, eps,
 * init_from) to the JSON object o, each unless o already has that key (a pipelined run's plan
 * holds its own micro_batches, micro_batch_size, seq_len): the one writer of them, for one-process
 * and pipelined runs. PT_ENOMEM. */
pt_status pt_train_cfg_to_json(const pt_train_cfg *c, struct cJSON *o);

/* What one optimizer step did. Filled by a step function (the runtime, or a test's). */
typedef struct pt_step_stats {
    double loss;         /* mean loss over the targets of the global batch (NaN/Inf possible) */
    double grad_norm;    /* global gradient norm before clipping (NaN/Inf possible) */
    float lr;            /* learning rate used */
    float clip_scale;    /* gradient multiplier from clipping (1 = not clipped) */
    int applied;         /* 1 when the optimizer ran; 0 when loss or norm was not finite */
    int64_t n_tokens;    /* tokens processed: M*B*T (per replica times replicas) */
    int64_t n_targets;   /* of which targets >= 0 */
    double fwd_s, bwd_s, optim_s; /* host seconds in forward, backward, norm + clip + optimizer */
    double exposed_comm_s; /* this rank's communication waits in the gradient reduction and optimizer step
                              (pt_runtime_step_info.exposed_comm_s; 0 in one process) */
    double comm_wait_s;    /* all of this rank's communication waits in the step (pt_runtime_step_info) */
    double tp_comm_s;      /* the part of comm_wait_s in tensor-parallel collectives (0 without --tp) */
    double snapshot_s;   /* the training thread's stall taking an in-memory snapshot after the step (0: none
                            taken; the copy to host memory: the write and the buddy copy run behind) */
    double snapshot_wait_s;  /* of which, waiting for the previous snapshot to be written and copied */
    double snapshot_write_s, snapshot_copy_s; /* the previous snapshot's background write and buddy copy */
} pt_step_stats;

/* Evaluation on the held-out split. */
typedef struct pt_eval_stats {
    double loss;        /* mean loss over eval targets */
    int64_t n_targets;
    int64_t n_correct;  /* problems answered exactly (built-in task) or tokens predicted (token file) */
    int64_t n_total;
    int is_task;        /* 1: n_correct/n_total count problems (exact match); 0: next-token accuracy */
    double seconds;
} pt_eval_stats;

/* Scores one evaluated micro-batch: `slot` of model `m` (a chunk holding the head, after
 * pt_model_forward with `targets` in the slot) against `targets` (B x T, host). Adds the slot's
 * loss SUM to acc->loss (the caller divides by acc->n_targets at the end), its targets to
 * acc->n_targets, and the correct/total counts of its greedy predictions (pt_dataset_score) to
 * acc->n_correct/n_total; sets acc->is_task. pred holds B*T ints (scratch); the predictions are
 * pt_model_slot_predict's. The one scorer of the pipeline runtime's eval (pt_runtime_eval)
 * and of the tests' reference trainer, so both report the same numbers for the same weights. Does not allocate. */
pt_status pt_eval_score_slot(pt_model *m, int slot, const pt_dataset *data,
                             const int32_t *targets, int B, int T, int32_t *pred,
                             pt_eval_stats *acc);

#ifdef __cplusplus
}
#endif
#endif
