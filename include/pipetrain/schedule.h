/* pipetrain/schedule.h — a pipeline training step as data: the schedule IR, its text and CSV
 * forms, generators, the validator and the time-and-memory simulator.
 *
 * A schedule is, for each of P ranks, an ordered list of actions (forward, backward,
 * backward-input, backward-weight, send/receive of activations and gradients, gradient
 * reduction, optimizer step) over M micro-batches and V chunks per rank. Chunk c of rank r
 * is virtual stage stage_of[r*V + c] (0..P*V-1 in layer order). Every schedule, generated or
 * written by hand, goes through the same validator, simulator and runtime.
 *
 *     pt_schedule *s;
 *     PT_CHECK(pt_sched_generate("1f1b", 4, 1, 8, NULL, &s));   // P=4, V=1, M=8, unit costs
 *     pt_status st = pt_sched_validate(s);                       // PT_OK for generated ones
 *     pt_sim_result r;
 *     if (st == PT_OK) st = pt_sched_simulate(s, NULL, &r);     // r.bubble_overall == 3/11
 *     ...
 *     pt_sim_result_free(&r);
 *     pt_sched_destroy(s);
 *
 * Text form (docs/schedules.md), one line per rank after a header line:
 *
 *     # pipetrain-schedule v1 name=1f1b ranks=2 chunks=1 microbatches=2 stages=0,1
 *     rank0: F0.0 SA0.0>1 F1.0 SA1.0>1 RG0.0<1 B0.0 RG1.0<1 B1.0 AR STEP
 *     rank1: RA0.0<0 F0.0 B0.0 SG0.0>0 RA1.0<0 F1.0 B1.0 SG1.0>0 AR STEP
 *
 * A send names the sender's chunk (the one that produced the data), a receive the receiver's
 * chunk (the one that consumes it); both name the micro-batch and the peer rank. Sends are
 * non-blocking (buffered); receives block until the matching send was issued.
 *
 * Nothing here touches tensors or communication. All functions are thread-safe on distinct
 * objects; none blocks or prints. Errors are recorded with pt_fail (pt_last_error()).
 */
#ifndef PIPETRAIN_SCHEDULE_H
#define PIPETRAIN_SCHEDULE_H

#include <stddef.h>

#include "pipetrain/status.h"
#include "pipetrain/timeline.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pt_action_kind {
    PT_ACT_FORWARD,          /* "F": forward of (micro-batch, chunk) */
    PT_ACT_BACKWARD,         /* "B": input + weight gradients fused */
    PT_ACT_BACKWARD_INPUT,   /* "I": gradient w.r.t. the chunk's input only */
    PT_ACT_BACKWARD_WEIGHT,  /* "W": gradient w.r.t. the chunk's weights (after its I) */
    PT_ACT_SEND_ACT,         /* "SA": send the activation that chunk produced to `peer` */
    PT_ACT_RECV_ACT,         /* "RA": receive the input activation of chunk from `peer` */
    PT_ACT_SEND_GRAD,        /* "SG": send the input gradient chunk produced to `peer` */
    PT_ACT_RECV_GRAD,        /* "RG": receive the output gradient of chunk from `peer` */
    PT_ACT_REDUCE_GRADS,     /* "AR": this rank's gradient reductions (tied twin, data parallel) */
    PT_ACT_OPTIMIZER_STEP,   /* "STEP": optimizer step, after AR */
    PT_ACT_KIND_COUNT
} pt_action_kind;

/* microbatch, chunk: -1 for AR and STEP. peer: a rank for sends/receives, -1 otherwise. */
typedef struct pt_action {
    pt_action_kind kind;
    int microbatch;
    int chunk;
    int peer;
} pt_action;

typedef struct pt_schedule {
    char name[32];           /* generator name or the text form's name= (no spaces) */
    int n_ranks;             /* P pipeline ranks (stages per replica) */
    int n_chunks;            /* V chunks per rank */
    int n_microbatches;      /* M */
    int *stage_of;           /* [rank * n_chunks + chunk] -> virtual stage 0..P*V-1; owned */
    int *n_actions;          /* [rank]; owned */
    pt_action **actions;     /* [rank][i]; owned */
    int *cap_actions;        /* [rank] allocated length of actions[rank]; owned, internal */
} pt_schedule;

/* Simulation costs. Arrays have n_vstages entries (virtual stage order) and are owned by
 * whoever built the struct (pt_sim_costs_destroy frees those made by the functions below).
 * f, b, i, w: seconds of forward, fused backward, backward-input, backward-weight of one
 * micro-batch on that virtual stage. act_bytes: activation memory one in-flight micro-batch
 * holds on that stage. boundary_bytes[v]: bytes sent from stage v to v+1 (activation) and
 * back (gradient); may be NULL (0 bytes). link_bandwidth_Bps <= 0 means infinite.
 * reduce_s, step_s: seconds of AR and STEP per rank. */
typedef struct pt_sim_costs {
    int n_vstages;
    double *f, *b, *i, *w;
    double *act_bytes;
    double link_latency_s, link_bandwidth_Bps;
    double *boundary_bytes;
    double reduce_s, step_s;
} pt_sim_costs;

/* One timeline event per executed action: pt_timeline_event of pipetrain/timeline.h. */
typedef struct pt_sim_result {
    double step_time;         /* seconds from the first action's start to the last one's end */
    int n_ranks;
    double *bubble;           /* [rank] idle fraction: 1 - (F+B+I+W busy time) / step_time */
    double bubble_overall;    /* mean of bubble[] */
    double *busy_s;           /* [rank] seconds of F/B/I/W compute */
    int *peak_inflight;       /* [rank] most (micro-batch, chunk) activations held at once */
    double *peak_act_bytes;   /* [rank] most activation bytes held at once (costs->act_bytes) */
    int n_events;
    pt_timeline_event *events; /* [n_events] in rank order, then action order */
} pt_sim_result;

/* ---- building and inspecting ---- */

/* Creates an empty schedule (no actions) for P ranks, V chunks, M micro-batches. stage_of
 * ([P*V], copied) may be NULL for the default stage = chunk*P + rank. `name` is truncated
 * to 31 characters, blanks and control characters become '_', and NULL or "" becomes
 * "unnamed" (so the text form can carry it). P*V*M may be at most 2^24. Returns PT_EINVAL
 * (bad sizes; stage_of not a permutation) or PT_ENOMEM;
 * *out owned by the caller (pt_sched_destroy). */
pt_status pt_sched_create(const char *name, int P, int V, int M, const int *stage_of, pt_schedule **out);

/* Frees a schedule and everything it owns. Accepts NULL. */
void pt_sched_destroy(pt_schedule *s);

/* Appends one action to rank `rank`'s list (amortized O(1)). PT_EINVAL on a bad rank, PT_ENOMEM. */
pt_status pt_sched_append(pt_schedule *s, int rank, pt_action a);

/* Deep copy. PT_ENOMEM. */
pt_status pt_sched_clone(const pt_schedule *s, pt_schedule **out);

/* 1 when a and b have the same name, sizes, stage map and action lists; 0 otherwise. */
int pt_sched_equal(const pt_schedule *a, const pt_schedule *b);

/* Virtual stage of (rank, chunk). No checks beyond the caller's ranges. */
int pt_sched_vstage(const pt_schedule *s, int rank, int chunk);

/* Rank and chunk holding virtual stage v; PT_EINVAL when no chunk holds it. */
pt_status pt_sched_owner(const pt_schedule *s, int vstage, int *rank, int *chunk);

/* 1 for F, B, I, W. */
int pt_action_is_compute(pt_action_kind k);

/* Upper-case name of a kind ("FORWARD", "RECV_GRAD", ...); "?" when out of range. */
const char *pt_action_kind_name(pt_action_kind k);

/* Writes the text token of `a` ("F3.0", "SA3.0>1", "AR") into buf (NUL-terminated, truncated
 * to cap). Returns the token length (as snprintf). */
int pt_action_format(const pt_action *a, char *buf, size_t cap);

/* Most (micro-batch, chunk) activations rank `rank` holds at once when it runs its list in
 * order: an activation is held from its F until its B, or until its W with split backward.
 * This is the number of activation slots the runtime needs on that rank. -1 on a bad rank. */
int pt_sched_peak_inflight(const pt_schedule *s, int rank);

/* ---- generators ---- */

/* NULL-terminated list of generator names: gpipe, 1f1b, interleaved, looped-bfs, zb-h1,
 * zb-h2, zbv. Static storage. */
const char *const *pt_sched_generator_names(void);
/* 1 when name (may be NULL: 0) is one of pt_sched_generator_names, else 0 (a file's path, say). Pure. */
int pt_sched_is_generator(const char *name);

/* Chunks per rank generator `name` uses when none is asked for: 2 for interleaved and zbv, else 1
 * (also for names that are not generators). Pure. */
int pt_sched_default_chunks(const char *name);

/* 1 for the generators that run all of a rank's forwards before its first backward (gpipe,
 * looped-bfs), so a pipeline's forwards and backwards are two phases, each as slow as its slowest
 * stage: work moved from a stage's backward into its forward (a chunked LM head's loss gradient,
 * train --head-chunk) lengthens the forward phase without shortening the backward one. 0
 * otherwise (also NULL and names that are not generators). Pure. */
int pt_sched_forwards_first(const char *name);

/* Generates schedule `name` for P ranks, V chunks per rank and M micro-batches, with
 * communication, AR and STEP inserted by one lowering pass. Chunk counts: gpipe, 1f1b, zb-h1,
 * zb-h2: V=1 (stage = rank); interleaved: V>=2 (stage = c*P + r), any M>=1; looped-bfs: any V
 * (stage = c*P + r); zbv: V=2 (chunk 0 = stage r, chunk 1 = stage 2P-1-r). The zero-bubble
 * ones (zb-h1, zb-h2, zbv) place their work by a list-scheduling pass over `costs` (NULL:
 * unit costs F=1, B=2, I=1, W=1; c->n_vstages must be P*V); the others ignore costs.
 * Orders and memory budgets of each generator: docs/schedules.md. The result always passes
 * pt_sched_validate. Returns PT_EINVAL naming the bad argument, or PT_ENOMEM. */
pt_status pt_sched_generate(const char *name, int P, int V, int M, const pt_sim_costs *costs, pt_schedule **out);

/* Lowering: from a schedule holding only compute actions (F/B/I/W; AR and STEP allowed and
 * dropped), makes the full schedule: each receive right before the compute that needs it,
 * each send right after the compute that produces it (for stage boundaries that cross ranks),
 * then AR and STEP at the end of every rank's list. PT_EINVAL when `compute` holds a
 * send/receive, PT_ENOMEM. *out owned by the caller. */
pt_status pt_sched_lower(const pt_schedule *compute, pt_schedule **out);

/* Forward-only lists for evaluation, on the stage placement of `placement` (its P, V and
 * stage_of; its actions are not read): M micro-batches, each rank doing its forwards in order
 * of (micro-batch, virtual stage), lowered with their sends and receives, no AR or STEP. With
 * buffered sends this never deadlocks (every rank works through one global order). It has no
 * backward, so pt_sched_validate refuses it by design. *out owned by the caller. */
pt_status pt_sched_forward_only(const pt_schedule *placement, int M, pt_schedule **out);

/* ---- validator ---- */

/* Checks that every rank can run `s`: fields in range; each (micro-batch, chunk) forward
 * exactly once and backward exactly once (B, or I then W); F before its backward and I before
 * its W; each stage's input comes from the stage before it (received before use on another
 * rank, computed earlier on the same rank); sends and receives pair up in kind, micro-batch,
 * stage and order on every link, each send after the compute producing it; one AR then one
 * STEP after all compute; and no deadlock when run with buffered sends and blocking receives.
 * Returns PT_OK, or PT_EINVAL with a message naming the rank, the action index and the
 * reason; for a deadlock the message holds (multi-line) every rank's position as a grid with
 * the stuck actions marked. Allocates temporaries (PT_ENOMEM). */
pt_status pt_sched_validate(const pt_schedule *s);

/* ---- text and CSV forms ---- */

/* Parses the text form (docs/schedules.md). Blank lines and other '#' lines are ignored.
 * Errors are PT_EFORMAT "line L:C: ..." (unknown token, bad number, wrong rank count,
 * micro-batch/chunk/peer out of range) or PT_ENOMEM. Does not validate. *out owned by caller. */
pt_status pt_sched_parse(const char *text, pt_schedule **out);

/* Formats `s` in the text form; print then parse gives back an equal schedule, and parse then
 * print gives back canonical text exactly. *text_out malloc'd; caller frees. PT_ENOMEM. */
pt_status pt_sched_format(const pt_schedule *s, char **text_out);

/* Reads a schedule file: the CSV form when the path ends in ".csv", else the text form.
 * PT_EIO when it cannot be read; parse errors are prefixed with the path. */
pt_status pt_sched_load(const char *path, pt_schedule **out);

/* Writes the text form to `path` (".csv": the CSV form). PT_EIO, PT_ENOMEM. */
pt_status pt_sched_save(const pt_schedule *s, const char *path);

/* CSV in the layout of PyTorch's torch.distributed.pipelining (_dump_csv/_load_csv): one row
 * per rank, one cell per action "<stage><type><microbatch>" with stage the virtual stage and
 * type F, B, I, W, SEND_F, RECV_F, SEND_B, RECV_B; AR becomes one "<stage>REDUCE_GRAD" per
 * chunk of the rank; STEP has no PyTorch form and is left out. *text_out malloc'd. */
pt_status pt_sched_to_csv(const pt_schedule *s, char **text_out);

/* Reads that CSV. P = rows, V = stages / P, M = largest micro-batch + 1; a rank's chunks are
 * its stages in increasing order. Consecutive REDUCE_GRAD cells become one AR, and AR STEP
 * close every rank's list. A CSV with no SEND/RECV cells (PyTorch's compute-only form) is
 * lowered (pt_sched_lower). `name` names the result (NULL: "csv"). PT_EFORMAT "row R, cell
 * C: ..." on malformed input. */
pt_status pt_sched_from_csv(const char *text, const char *name, pt_schedule **out);

/* ---- simulator ---- */

/* Costs for n_vstages stages with F=1, B=2, I=1, W=1 seconds, act_bytes 1 per micro-batch,
 * boundary_bytes 0, latency 0, infinite bandwidth, AR and STEP 0. *out owned by the caller. */
pt_status pt_sim_costs_uniform(int n_vstages, pt_sim_costs **out);

/* Reads a cost file (JSON, docs/schedules.md): keys f, b, i, w, act_bytes, boundary_bytes
 * (each a number for every stage or an array of n_vstages numbers), link_latency_s,
 * link_bandwidth_Bps, reduce_s, step_s; all optional (uniform defaults; a missing b is i+w, a
 * missing i/w is b/2). Unknown keys and negative values are refused (PT_EINVAL naming them). */
pt_status pt_sim_costs_load(const char *path, int n_vstages, pt_sim_costs **out);

/* Frees costs made by the functions above. Accepts NULL. */
void pt_sim_costs_destroy(pt_sim_costs *c);

/* Replays `s` (validated first; its error is returned as is) event by event: each rank runs
 * its actions in order; compute takes its stage's cost; a send is issued instantly and its
 * data arrives latency + bytes/bandwidth later (transfers on one directed link one after
 * another); a receive waits for its data. c == NULL: unit costs; otherwise c->n_vstages must
 * be P*V. Fills *out (arrays malloc'd; free with pt_sim_result_free). PT_EINVAL, PT_ENOMEM. */
pt_status pt_sched_simulate(const pt_schedule *s, const pt_sim_costs *c, pt_sim_result *out);

/* Frees the arrays of a result and zeroes it. Accepts NULL and zeroed results. */
void pt_sim_result_free(pt_sim_result *r);

#ifdef __cplusplus
}
#endif
#endif
