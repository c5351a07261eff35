/* pipetrain/runtime.h — executes a schedule (schedule.h) on this rank: the rank's chunks of the
 * model, their optimizers, activation slots, and one step = one pass over the rank's action list.
 *
 * Every rank of a job (P pipeline ranks x D data-parallel replicas x T tensor-parallel ranks, world
 * rank = (d * P + p) * T + t; T = 1 without tensor parallelism) builds
 * a pt_runtime from the same model config, plan and schedule. The runtime never asks which
 * generator made the schedule: forward / backward / backward-input / backward-weight run through
 * the model (and so the backend), sends and receives through pt_comm, and REDUCE_GRADS does the
 * tied-weight sum (embedding + LM-head twin), the data-parallel sum, and the global gradient norm
 * by the rule in optim.h, so that P ranks give the weights of one process bit for bit.
 *
 *     pt_runtime_opts o = { .cfg = &cfg, .plan = plan, .sched = sched, .comm = comm,
 *                           .be = be, .stream = stream, .adamw = ac, .seed = 1 };
 *     pt_runtime *rt;
 *     PT_CHECK(pt_runtime_create(&o, &rt));
 *     for (int64_t s = 0; s < steps; s++) {
 *         pt_runtime_step_info si;
 *         PT_CHECK(pt_runtime_step(rt, data, s, lr_at(s), &si));
 *     }
 *     pt_runtime_destroy(rt);
 *
 * Data: a rank holding the embedding (tokens) or the head (targets) reads its micro-batches from
 * the data set itself: micro-batch j of replica d at step s is samples [(d*M + j)*B, +B) (data.h).
 * Only activations and their gradients travel between ranks.
 *
 * Loss scale: every micro-batch's backward uses pt_loss_scale_for(targets >= 0 in the GLOBAL batch,
 * all replicas), the step train.h describes, and data-parallel replicas SUM their gradients: the
 * one-process gradient of the mean loss over the global batch.
 * A step whose loss or gradient norm is NaN/Inf runs but does not update (info->applied = 0).
 *
 * Thread-safety: a pt_runtime and everything it holds is used by one thread at a time.
 */
#ifndef PIPETRAIN_RUNTIME_H
#define PIPETRAIN_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/backend.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/comm.h"
#include "pipetrain/data.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"
#include "pipetrain/partition.h"
#include "pipetrain/profile.h"
#include "pipetrain/schedule.h"
#include "pipetrain/status.h"
#include "pipetrain/train_loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pt_runtime pt_runtime;

/* d(loss)/d(per-token loss) for a global batch with n_targets targets: 1.0f / (float)n_targets,
 * 0 when there are none — the reference trainer's expression (tests/common/ref_trainer.c), so the
 * bits match. */
float pt_loss_scale_for(int64_t n_targets);

typedef struct pt_runtime_opts {
    const pt_model_config *cfg; /* borrowed; must outlive the runtime */
    const pt_plan *plan;        /* borrowed: vstage layer ranges, recompute, B, M, T, P, V, D */
    const pt_schedule *sched;   /* borrowed; must match the plan's P, V and M */
    pt_comm *comm;              /* borrowed; NULL only when P * D == 1 */
    const pt_backend *be;       /* borrowed */
    pt_stream *stream;          /* borrowed; the models queue their work on it */
    pt_adamw_cfg adamw;         /* copied */
    uint64_t seed;              /* weight initialisation (pt_model_init_weights) */
    int64_t timeout_ms;         /* every wait; <= 0: pt_comm_timeout_ms, or 300000 without comm */
    size_t mem_limit_bytes;     /* 0: none; else refused at create when this rank would exceed it */
    pt_profile *profile;        /* borrowed; NULL: no events recorded */
    int overlap;                /* 1 (D > 1): the data-parallel gradient reduction runs in buckets while the
                                   backward computes (pipetrain/grad_sync.h: a thread with its own
                                   communicator), the same bits; host-memory backends only (PT_ENOTSUP
                                   otherwise); every rank the same (refused at create) */
    pt_precision precision;     /* PT_PRECISION_BF16: bf16 mixed precision (model_config.h) in every chunk, and
                                   bf16 stage messages where the link packs them and no boundary carries
                                   the head's fp32 row statistics (head_split 1); every rank the same */
    int no_stash;               /* bf16: 1 keeps the blocks' internals as floats (pt_model_opts.no_stash) */
} pt_runtime_opts;

typedef struct pt_runtime_step_info {
    double loss;         /* mean per-token loss over the global batch (every rank gets it) */
    int64_t n_tokens;    /* tokens that carried a loss in the global batch */
    double grad_norm;    /* global gradient norm before clipping */
    float clip_scale;    /* what the gradients were multiplied by */
    int applied;         /* 1 when the optimizer ran; 0 when the loss or the norm was NaN/Inf */
    double step_s;       /* wall time of this rank's step */
    double comm_wait_s;  /* time this rank spent waiting on receives, sends and collectives */
    double tp_comm_s;    /* the part of it in tensor-parallel collectives (0 without --tp) */
    double exposed_comm_s; /* the part of it in REDUCE_GRADS and OPTIMIZER_STEP: the gradient reduction the
                            * backward did not hide (with overlap, the wait for the buckets still in
                            * flight), the tied and norm all-reduces, ZeRO-1's parameter all-gather */
    double fwd_s, bwd_s, optim_s; /* host time in this rank's forward, backward (B, I, W) and
                                   * reduce + optimizer actions, less their comm waits (on a device
                                   * backend: the time to queue them; a profile times them on the
                                   * device with the backend's timeline markers) */
} pt_runtime_step_info;

/* Builds this rank's chunks: for each local chunk c, a pt_model of layers
 * plan->first_layer[v]..last_layer[v] (v = sched->stage_of[rank * V + c]), weights from `seed`, one
 * pt_optim each, and as many activation slots as the rank's action list keeps in flight for that
 * chunk (a dry run of the list). Checks the schedule against the plan (P, V, M, the stage map, and
 * that every send/receive peer owns the neighbouring virtual stage), creates the communication
 * groups (tied embedding/head pair, data-parallel peers), and checks memory against
 * mem_limit_bytes twice: the planner's prediction before allocating, the real allocation
 * (pt_backend_bytes_peak) after. Returns PT_OK, PT_EINVAL (plan/schedule mismatch, naming it),
 * PT_ENOMEM (one line: this rank's need, the limit, and how many stages would fit), or the
 * errors of the model, optimizer and comm. Collective: every rank must call it. *out owned by the
 * caller. */
pt_status pt_runtime_create(const pt_runtime_opts *o, pt_runtime **out);

/* Frees models, optimizers, groups and buffers, in reverse order. Accepts NULL. Does not talk to
 * other ranks. */
void pt_runtime_destroy(pt_runtime *rt);

/* Runs optimizer step `step` (0-based; also the data step) with learning rate `lr`: zeroes the
 * gradients, executes this rank's action list, and fills *info (may be NULL). Receives are posted
 * as soon as their slot is free, sends complete lazily, and every wait has the runtime's timeout;
 * a timeout or peer failure returns PT_ETIMEDOUT / PT_ECOMM with one line naming this rank, the
 * action, the peer, the step and this rank's position in its action list, e.g.
 * "rank 2: no RECV_ACT mb 5 chunk 0 from rank 1 after 300 s (step 14, action 37 of 96); check
 * rank 1's log". Collective: every rank runs the same step. Blocking. After an error the job is
 * broken (other ranks are mid-step, receives may still be posted): destroy the runtime. */
pt_status pt_runtime_step(pt_runtime *rt, pt_dataset *data, int64_t step, float lr, pt_runtime_step_info *info);

/* Held-out evaluation of the current weights, through the pipeline: eval batches 0..n_batches-1
 * of batch_seqs sequences each (0: B), the batches the reference trainer's
 * ref_train_eval (tests/common) scores with micro-batches of batch_seqs (pt_dataset_batch(PT_SPLIT_EVAL, k,
 * 0, batch_seqs, ...)). Each is cut into micro-batches of B (batch_seqs must be a multiple of B;
 * PT_EINVAL otherwise); replica d takes micro-batches d, d+D, ...; each replica runs its forward-
 * only list (pt_sched_forward_only on the schedule's placement) in rounds of at most M. The head
 * ranks score them (pt_eval_score_slot) and the totals are summed over the job, so every rank
 * returns the same *out. With D = 1 and batch_seqs = B the numbers are those of
 * ref_train_eval on the same weights, bit for bit when thread counts match. Gradients,
 * optimizer state and the training data position are untouched. Collective (every rank, same
 * arguments); blocking; errors name the rank and the action as pt_runtime_step does. */
pt_status pt_runtime_eval(pt_runtime *rt, pt_dataset *data, int n_batches, int batch_seqs, pt_eval_stats *out);

/* This rank's world rank, pipeline rank (0..P-1) and replica (0..D-1). */
int pt_runtime_rank(const pt_runtime *rt);
int pt_runtime_stage_rank(const pt_runtime *rt);
int pt_runtime_replica(const pt_runtime *rt);
/* Tensor parallelism (pt_plan.n_tp): this rank's index in its group of the same (replica, pipeline
 * rank), and the group's size (1 without). World rank = (d * P + p) * T + t. */
int pt_runtime_tp_rank(const pt_runtime *rt);
int pt_runtime_tp_size(const pt_runtime *rt);

/* Chunks on this rank (the schedule's V), and for chunk c: its virtual stage, model and optimizer
 * (borrowed; owned by the runtime; valid until destroy). Checkpoints save these by tensor name. */
int pt_runtime_n_chunks(const pt_runtime *rt);
int pt_runtime_chunk_vstage(const pt_runtime *rt, int c);
pt_model *pt_runtime_chunk_model(pt_runtime *rt, int c);
pt_optim *pt_runtime_chunk_optim(pt_runtime *rt, int c);

/* Activation slots allocated for chunk c (the dry-run peak), and the most slots that were in use
 * at once in any step so far (measured). */
int pt_runtime_chunk_slots(const pt_runtime *rt, int c);
int pt_runtime_chunk_peak_inflight(const pt_runtime *rt, int c);

/* Bytes this runtime allocated through the backend at create (parameters, gradients, optimizer
 * state, activation slots: what --mem-limit is checked against), and the bytes of its slots. */
size_t pt_runtime_peak_bytes(const pt_runtime *rt);
size_t pt_runtime_slot_bytes(const pt_runtime *rt);

/* How activations, gradients and gradient all-reduces travel between this job's ranks, with the
 * reason: "host memory (...)" on the CPU backend; on device memory "nccl (every rank has its own
 * GPU)" or "host-staged (ranks 0 and 1 share GPU 0 on node7; NCCL needs one GPU per rank)" — the
 * same on every rank (docs/cuda.md). Borrowed; valid until destroy. */
const char *pt_runtime_transfer_path(const pt_runtime *rt);

/* ---- the training entry (`pipetrain train`, every layout: one process is P = D = 1) ---- */

/* One line for the user (plan, prediction, profile), without a newline; called on rank 0 only. */
typedef void (*pt_runtime_log_fn)(void *ctx, const char *line);

typedef struct pt_runtime_train_args {
    pt_train_cfg train;       /* model, data, steps, lr schedule, B, M, T, threads, seed, run_dir,
                                 ckpt_dir/ckpt_every/resume, stop (every rank of a job passes
                                 one; the ranks agree after each step: pt_train_ops.agree_stop) */
    int eval_batch_seqs;      /* sequences per held-out eval batch (a multiple of B); 0: B */
    int stages;               /* P >= 1 (a schedule file's rank count wins) */
    int replicas;             /* D >= 1; the job must have P * D ranks */
    int zero;                 /* 1: ZeRO-1, the AdamW moments sharded over the D replicas (pt_plan.zero) */
    int tp;                   /* T: tensor-parallel ranks per stage (pt_plan.n_tp; 0 or 1: none); the job has
                                 P * D * T ranks, world rank (d * P + p) * T + t */
    int sp;                   /* 1: sequence parallelism with T > 1 (pt_plan.sp) */
    int overlap;              /* 1: the data-parallel reduction overlaps the backward (pt_runtime_opts.overlap) */
    int no_stash;             /* 1: --bf16-stash 0 (pt_runtime_opts.no_stash) */
    int chunks;               /* V; 0: 2 for interleaved and zbv, else 1 */
    const char *schedule;     /* generator name (pt_sched_generator_names) or a schedule file; NULL: 1f1b */
    const char *partition;    /* planner method: uniform, params, time, memory; NULL: time */
    const char *layout;       /* layers per chunk, "3,3" (overrides partition); NULL */
    const char *layer_costs;  /* measured layer times for the planner (pipetrain profile-layers), or NULL */
    size_t mem_limit_bytes;   /* per rank; 0: none */
    const char *profile_dir;  /* NULL: no profile; else trace.json, timeline.svg, summary.json there */
    int profile;              /* 1: record every action's events (j->prof) even in a one-rank job without
                                 profile_dir, for a caller that reads them (benchmarks) */
    int64_t timeout_ms;       /* every wait; <= 0: PT_COMM_TIMEOUT or 300 s */
    const char *provider;     /* libfabric provider, NULL: automatic */
    pt_train_event_fn on_event; /* progress (rank 0 only); may be NULL */
    void *event_ctx;
    pt_runtime_log_fn on_log;   /* banner, plan, prediction, resume, profile lines (rank 0 only); may be NULL */
    void *log_ctx;
    /* Hooks on every rank (each may be NULL; `train --sample-every`): on_start once the runtime is
     * built (and resumed), before the first step (comm is NULL in a job of one rank); after_step
     * after each optimizer step (steps_done from 1), within the step (its time counts in the
     * step's), before its progress event. They may talk to other ranks through comm between the
     * steps. A non-OK return ends the run. */
    pt_status (*on_start)(void *ctx, pt_runtime *rt, pt_comm *comm, pt_dataset *data);
    pt_status (*after_step)(void *ctx, int64_t steps_done);
    void *hook_ctx;
    /* The model to train when not NULL (borrowed; train.model then only names it): `train --resume`
     * takes the checkpoint's config, which a preset name or file may no longer give. */
    const pt_model_config *model_config;
    /* 1: check the job without running it (src/cli/job_check.c, before any rank is forked):
     * pt_train_job_open joins no job and sets world = P x D, so that data, plan and schedule see the
     * job the ranks will; run no later phase than schedule. */
    int check_only;
} pt_runtime_train_args;

/* Runs a whole training job from inside one rank (every rank calls it; a job of several ranks was
 * started by pt_launch, srun, mpirun or torchrun; a job of one rank, P = D = 1, runs in the calling
 * process with no comm): the phases below in order, each one line —
 *   job (pt_train_job_open), data, plan, schedule, runtime, restore, loop, report —
 * then pt_train_job_close. summary (may be NULL) is filled on every rank. Returns the first error
 * (the same kind on every rank for plan and schedule problems; a timeout names the rank waited
 * for). Blocking for the whole run. */
pt_status pt_runtime_train_main(const pt_runtime_train_args *a, pt_train_summary *summary);

/* The state one rank's training run carries from phase to phase. Fields are filled by the phase
 * named beside them and read by the later ones (and by benchmarks); everything is owned by the job
 * and freed by pt_train_job_close. */
typedef struct pt_train_job {
    const pt_runtime_train_args *a; /* borrowed: must outlive the job */
    /* job */
    pt_comm *comm;              /* NULL in a job of one rank */
    int rank, world, local_rank;
    int P, D, V, M, B, T;       /* stages, replicas, chunks per rank, micro-batches, B, T */
    int TP, SP;                 /* tensor-parallel ranks per stage (1: none), sequence parallelism */
    const char *sched_name;     /* generator name or schedule file (borrowed from a) */
    pt_schedule *sched;         /* a schedule file's (job), else the generator's (schedule) */
    uint64_t run_seed;          /* the data order's seed: --seed, or the resumed run's (restore) */
    /* data */
    pt_model_config cfg;        /* the model as trained (the data's vocabulary; the plan's head split) */
    pt_dataset *data;
    /* plan */
    pt_device dev;
    pt_topology topo;
    pt_layer_times *measured;   /* --layer-costs, or NULL */
    pt_plan *plan;
    /* schedule */
    pt_sim_costs costs;         /* per virtual stage, from the plan's cost model (views into cost_arr) */
    double *cost_arr;
    /* runtime */
    const pt_backend *be;
    pt_stream *stream;
    pt_profile *prof;           /* NULL in a one-rank job without profile_dir or profile */
    pt_runtime *rt;
    char *run_json;             /* the run's description saved in checkpoints */
    /* restore */
    pt_ckpt_saver *saver;       /* NULL without train.ckpt_dir */
    int ckpt_lock_fd;           /* rank 0: the checkpoint root's lock (pt_ckpt_lock), -1 none */
    int64_t first_step;         /* 0, or the steps of the checkpoint resumed from */
    int64_t restore_begin_ns, restore_end_ns; /* pt_wall_ns around the checkpoint load (0: none) */
    struct pt_snapshot *snap;   /* in-memory snapshots (train.snapshot_every > 0), else NULL */
    const char *restore_source; /* "memory", "buddy" or "disk" after a resume, else NULL */
    char snap_dir[1024];
    int snap_warned;            /* the "snapshot waited" line was printed */
    /* loop */
    int stopping;               /* 1 once the ranks agreed to stop (train.stop): the next save is the last */
    char last_ckpt[512];
} pt_train_job;

/* job: zeroes *j, reads a schedule file (its P, V, M win), checks the eval batch against B and,
 * when the environment makes this process one rank of several, joins the job (pt_comm_create,
 * refusing ranks started with other settings) and checks it has P * D ranks. PT_EINVAL naming the
 * mismatch; the comm's errors. On any error of any phase, call pt_train_job_close. */
pt_status pt_train_job_open(pt_train_job *j, const pt_runtime_train_args *a);
/* data: model config (+ head split), pt_train_cfg_check, the data set (its tokenizer may widen the
 * vocabulary), logs the 'training ...' banner; batches of D * M * B sequences. */
pt_status pt_train_job_data(pt_train_job *j);
/* plan: layout or partitioner (with --head-split auto, the planner's LM-head split; one chunk
 * keeps the config's), priced on the cpu device scaled by the threads. */
pt_status pt_train_job_plan(pt_train_job *j);
/* schedule: per-stage costs, the generator (unless a file was read), the simulator's prediction,
 * logged with the plan. */
pt_status pt_train_job_schedule(pt_train_job *j);
/* runtime: backend stream (device by local rank), profile (pipelines, or profile_dir), the
 * runtime (pt_runtime_create, checking mem_limit_bytes), --init-from weights, the run's JSON and
 * rank 0's <run_dir>/config.json. */
pt_status pt_train_job_runtime(pt_train_job *j);
/* restore: the checkpoint writer (train.ckpt_dir), and with train.resume the newest checkpoint's
 * weights, moments, step and data seed (logs 'resuming after step N from DIR' and why a damaged
 * `latest` was skipped). */
pt_status pt_train_job_restore(pt_train_job *j);
/* loop: on_start, pt_train_loop with the runtime as its step (eval through the pipeline,
 * checkpoints of every rank's chunks, metrics and events on rank 0), then waits for the last
 * checkpoint. summary may be NULL. */
pt_status pt_train_job_loop(pt_train_job *j, pt_train_summary *summary);
/* The profiled steps gathered to rank 0 and summarised (and written to profile_dir): *have is 1
 * on rank 0 when *sum was filled (free it with pt_profile_summary_free), else 0 (no profile, or
 * another rank). Collective when there is a comm. */
pt_status pt_train_job_profile(pt_train_job *j, pt_profile_summary *sum, int *have);
/* report: pt_train_job_profile, logged as measurement next to prediction. */
pt_status pt_train_job_report(pt_train_job *j);
/* The setup phases in order — open, data, plan, schedule, runtime — for a caller that runs the
 * steps itself (pt_runtime_step on j->rt with j->data; `pipetrain bench`). On error call
 * pt_train_job_close too. */
pt_status pt_train_job_setup(pt_train_job *j, const pt_runtime_train_args *a);
/* Frees everything the phases made, in reverse order; *j is zeroed. Accepts a job whose phases
 * stopped anywhere (after pt_train_job_open was called). */
void pt_train_job_close(pt_train_job *j);

#ifdef __cplusplus
}
#endif
#endif
