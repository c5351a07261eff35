/* pipetrain/profile.h — what really happened in a pipeline run: every executed action's start and
 * end on a clock shared by all ranks, the time spent waiting on communication, and each rank's
 * peak memory; gathered to rank 0 and written as trace.json (Chrome trace), timeline.svg (the
 * same drawing as the simulator's) and summary.json (step time, tokens/s, FLOP/s, MFU, measured
 * bubble and communication wait per rank, peak memory per rank (in all and by kind, beside
 * the planner's prediction of each kind), and the simulator's prediction
 * for the same schedule from the per-action costs measured in this run).
 *
 *     pt_profile *p;
 *     PT_CHECK(pt_profile_create(rank, pt_comm_clock_offset_ns(comm), &p));
 *     // pt_runtime records into p while enabled (opts.profile = p)
 *     pt_prof_event *all = NULL; size_t n = 0;
 *     PT_CHECK(pt_profile_gather(p, comm, deadline, &all, &n));   // all ranks; rank 0 gets events
 *     if (rank == 0) {
 *         pt_profile_summary sum;
 *         PT_CHECK(pt_profile_summarize(all, n, &ropts, &sum));
 *         PT_CHECK(pt_profile_write_dir("prof", all, n, &ropts, &sum));
 *         pt_profile_summary_free(&sum);
 *     }
 *     free(all);
 *     pt_profile_destroy(p);
 *
 * Measured bubble of rank r = 1 - (time in forward/backward actions) / (pipeline window), where the
 * window of a step runs from the first action start to the last forward/backward end over all
 * ranks — the same definition as the simulator's, which does not price REDUCE_GRADS and
 * OPTIMIZER_STEP. Step time (for tokens/s) is the full step, reductions and optimizer included.
 *
 * Thread-safety: one pt_profile is used by one thread at a time; the summary and writer functions
 * are pure (they only read their inputs).
 */
#ifndef PIPETRAIN_PROFILE_H
#define PIPETRAIN_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include "pipetrain/backend.h"
#include "pipetrain/comm.h"
#include "pipetrain/memkind.h"
#include "pipetrain/model_config.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pt_schedule;
struct pt_plan;

/* One executed action of one rank. An event with action < 0 is not an action of the list but
 * the overlapped gradient reduction's bucket -1 - action (runtime --overlap; kind REDUCE_GRADS,
 * microbatch = bucket, chunk = its chunk, wait_ns 0): work of the rank's communication thread,
 * drawn on a track of its own in trace.json. */
/* The action field of a tensor-parallel collective (the runtime with --tp): a collective inside the
 * action kind / microbatch / chunk of the event, drawn on the rank's "tp" track; its time is part of
 * that action's wait already, so the summary counts it only in tp_comm_s. */
#define PT_PROF_TP_ACTION (-1000000)

typedef struct pt_prof_event {
    int64_t step;       /* optimizer step */
    int32_t rank;       /* world rank */
    int32_t stage_rank; /* pipeline rank (0..P-1) */
    int32_t action;     /* index in the rank's action list */
    int32_t kind;       /* pt_action_kind */
    int32_t microbatch; /* -1 for REDUCE_GRADS / OPTIMIZER_STEP */
    int32_t chunk;      /* local chunk index (-1 where none) */
    int32_t vstage;     /* virtual stage of the chunk (-1 where none) */
    int32_t peer;       /* pipeline rank of the other side for sends/receives, else -1 */
    int64_t start_ns;   /* rank 0's monotonic clock */
    int64_t end_ns;
    int64_t wait_ns;    /* part of [start, end) spent waiting for communication */
} pt_prof_event;

typedef struct pt_profile pt_profile;

/* An empty event log for world rank `rank`; clock_offset_ns (pt_comm_clock_offset_ns, 0 without
 * comm) is added to every pt_now_ns() time so all ranks share rank 0's clock. Recording starts
 * enabled. PT_ENOMEM. *out owned by the caller. */
pt_status pt_profile_create(int rank, int64_t clock_offset_ns, pt_profile **out);
void pt_profile_destroy(pt_profile *p); /* accepts NULL */

/* Turns recording on or off (e.g. off for warm-up steps). */
void pt_profile_set_enabled(pt_profile *p, int enabled);
int pt_profile_enabled(const pt_profile *p);

/* pt_now_ns() + the clock offset: the time base of events. */
int64_t pt_profile_now_ns(const pt_profile *p);

/* Appends one event (the rank field is overwritten with the profile's rank). Grows its buffer
 * geometrically, so recording a steady run allocates only a few times. A no-op when disabled.
 * PT_ENOMEM. */
pt_status pt_profile_record(pt_profile *p, const pt_prof_event *e);

/* Notes this rank's peak allocated bytes (kept as the maximum of all notes). */
void pt_profile_note_peak_bytes(pt_profile *p, size_t bytes);
/* Notes this rank's account by kind (pt_backend_mem_stats): each kind's peak and the total's peak
 * are kept as the maxima of all notes. Call it once the run's memory is all allocated (the end of
 * training, before pt_profile_gather). */
void pt_profile_note_mem(pt_profile *p, const pt_mem_stats *m);

/* Events recorded so far (borrowed; valid until the next record or destroy). */
size_t pt_profile_n_events(const pt_profile *p);
const pt_prof_event *pt_profile_events(const pt_profile *p);

/* Collective over all ranks of `comm` (NULL: one process): rank 0 receives every rank's events
 * (rank order) in *all (malloc'd, caller frees) and *n_all, and peak_bytes[r] for each world rank
 * (peak_bytes: caller's array of pt_comm_size entries, may be NULL); other ranks get *all = NULL,
 * *n_all = 0. Blocks until deadline_ns. */
pt_status pt_profile_gather(pt_profile *p, pt_comm *comm, int64_t deadline_ns, pt_prof_event **all, size_t *n_all,
                            double *peak_bytes);
/* pt_profile_gather that also gives rank 0 each rank's peak per kind (pt_profile_note_mem; 0 where
 * none was noted): kind_peak_bytes[r * PT_MEM_KINDS + k] for world rank r and pt_mem_kind k
 * (caller's array of pt_comm_size * PT_MEM_KINDS entries, may be NULL). */
pt_status pt_profile_gather_mem(pt_profile *p, pt_comm *comm, int64_t deadline_ns, pt_prof_event **all,
                                size_t *n_all, double *peak_bytes, double *kind_peak_bytes);

/* What the report needs beyond the events. */
typedef struct pt_profile_report_opts {
    const struct pt_schedule *sched; /* borrowed: the schedule that ran (for the prediction) */
    const struct pt_plan *plan;      /* borrowed: B, M, T, P, V, D */
    const pt_model_config *cfg;      /* borrowed: for FLOPs */
    int n_world;                     /* world size (P * D) */
    double peak_flops;               /* FLOP/s of all the ranks' hardware together, for MFU (0: not reported) */
    const double *peak_bytes;        /* [n_world] from pt_profile_gather; may be NULL */
    const double *kind_peak_bytes;   /* [n_world * PT_MEM_KINDS] from pt_profile_gather_mem; may be NULL */
    double link_latency_s;           /* for the prediction (<= 0: 20 us) */
    double link_bandwidth_Bps;       /* for the prediction (<= 0: 10 GB/s) */
    const char *title;               /* timeline title; may be NULL */
    const char *compute_clock;       /* how compute actions were timed (summary.json "compute_clock"); may be NULL */
} pt_profile_report_opts;

typedef struct pt_profile_summary {
    int n_world;             /* ranks */
    int n_steps;             /* steps the events cover */
    double step_time_s;      /* mean full step (first start to last end over all ranks) */
    double window_s;         /* mean pipeline window (see the top of this header) */
    double tokens_per_s;     /* B*T*M*D / step_time_s */
    double flops_per_s;      /* analytic step FLOPs / step_time_s */
    double mfu;              /* flops_per_s / peak_flops (0 when peak_flops is 0) */
    double *bubble;          /* [n_world] measured idle share of the window */
    double bubble_overall;   /* mean over ranks */
    double *comm_wait_s;     /* [n_world] mean per step */
    double *tp_comm_s;       /* [n_world] mean per step: the part of comm_wait_s in tensor-parallel collectives */
    double *exposed_comm_s;  /* [n_world] mean per step: the part of comm_wait_s in REDUCE_GRADS and
                                OPTIMIZER_STEP (the gradient reduction the backward did not hide) */
    double *peak_bytes;      /* [n_world] (0 when unknown) */
    /* memory by kind (pipetrain/memkind.h), world rank r's kind k at [r * PT_MEM_KINDS + k]:
     * measured peaks (0 when unknown) and the plan's prediction for r's pipeline rank r % P
     * (pt_plan.pred_rank_mem_kind; 0 when the plan has none); pred_bytes[r] their sum */
    int has_kinds;           /* 1 when kind_peak_bytes was given */
    double *kind_peak_bytes, *pred_kind_bytes, *pred_bytes;
    /* per virtual stage, mean seconds of F, B (fused), I, W as measured (0 where not run) */
    int n_vstages;
    double *cost_f, *cost_b, *cost_i, *cost_w;
    /* the simulator on those costs (valid when has_prediction) */
    int has_prediction;
    double pred_step_time_s; /* the simulator's pipeline window */
    double *pred_bubble;     /* [P] per pipeline rank */
    double pred_bubble_overall;
} pt_profile_summary;

/* Computes the summary of `n` events (all ranks). PT_EINVAL when there are no complete steps.
 * The arrays in *out are malloc'd: pt_profile_summary_free. */
pt_status pt_profile_summarize(const pt_prof_event *ev, size_t n, const pt_profile_report_opts *o,
                               pt_profile_summary *out);
void pt_profile_summary_free(pt_profile_summary *s); /* accepts a zeroed summary */

/* The summary as a cJSON object string (malloc'd, caller frees) — the content of summary.json. */
pt_status pt_profile_summary_json(const pt_profile_summary *s, const pt_profile_report_opts *o, char **text_out);

/* Writes DIR/trace.json (every profiled step), DIR/timeline.svg (the last profiled step) and,
 * when s is not NULL, DIR/summary.json, creating DIR. Times start at 0 at the first event shown.
 * PT_EIO naming the file. */
pt_status pt_profile_write_dir(const char *dir, const pt_prof_event *ev, size_t n, const pt_profile_report_opts *o,
                               const pt_profile_summary *s);

#ifdef __cplusplus
}
#endif
#endif
