/* pipetrain/timeline.h — pictures of a pipeline step: an SVG timeline and a Chrome trace.
 *
 * The simulator (schedule/) and the runtime's profiler (real, measured runs) describe a step
 * the same way, as a list of timed events, one per executed action; both draw them with
 * these two writers, so a prediction and a measurement look alike.
 *
 *     pt_timeline_event ev[] = {
 *         { .rank = 0, .action = 0, .kind = PT_ACT_FORWARD, .microbatch = 0, .chunk = 0,
 *           .peer = -1, .start_s = 0.0, .end_s = 1.0 },
 *         ...
 *     };
 *     pt_timeline_opts o = { .title = "1f1b P=2 M=4", .n_ranks = 2 };
 *     FILE *f = fopen("timeline.svg", "w");
 *     pt_status st = pt_timeline_svg(ev, n, &o, f);
 *     fclose(f);
 *
 * Neither writer keeps state; both are thread-safe on distinct FILE streams.
 */
#ifndef PIPETRAIN_TIMELINE_H
#define PIPETRAIN_TIMELINE_H

#include <stdio.h>

#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One executed action. `kind` is a pt_action_kind value (pipetrain/schedule.h); `action` is
 * its index in the rank's action list (-1 when unknown). Times are seconds from the step's
 * start (any common origin works: the writers shift the earliest start to 0). For a receive,
 * [start_s, end_s) is the time spent waiting for the data. */
typedef struct pt_timeline_event {
    int rank;
    int action;
    int kind;
    int microbatch;
    int chunk;
    int peer;      /* sends/receives: the other rank; -1 otherwise */
    double start_s;
    double end_s;
    int track;     /* 0: the rank's action list; 1: its communication thread (the overlapped gradient
                      reduction's buckets); 2: its tensor-parallel collectives (trace.json only, the
                      SVG leaves tracks 1 and 2 out) */
} pt_timeline_event;

typedef struct pt_timeline_opts {
    const char *title;      /* drawn at the top; may be NULL */
    int n_ranks;            /* rows; events with rank outside [0, n_ranks) are refused */
    const double *bubble;   /* [n_ranks] idle fraction per rank shown at each row's end; may be NULL */
    int show_comm;          /* 1: draw send/receive waits as thin boxes under the compute row */
    int width_px;           /* SVG drawing width; <= 0 picks 1200 */
} pt_timeline_opts;

/* Writes an SVG timeline of `events` to `f`: one row per rank, one colored box per compute
 * action (forward, backward, backward-input, backward-weight, reduce, optimizer) labelled with
 * its micro-batch (and chunk when chunks > 1), idle time left empty, a time axis, a legend and,
 * when opts->bubble is given, each rank's bubble percentage. Events may come in any order.
 * Returns PT_OK, PT_EINVAL (bad rank/kind/time in an event, naming it) or PT_EIO (write
 * failed). Borrows everything; blocks only on the stream. */
pt_status pt_timeline_svg(const pt_timeline_event *events, int n_events, const pt_timeline_opts *opts, FILE *f);

/* Writes `events` to `f` as Chrome trace JSON (the "traceEvents" array form; opens in Perfetto
 * and chrome://tracing): one "X" event per action, pid 0, tid = rank, named like the text form
 * of the action ("F3.0", "RA3.0<1"), times in microseconds, plus thread-name metadata
 * ("rank N"); events of track 1 on tid n_ranks + rank ("rank N comm"). Returns PT_OK, PT_EINVAL,
 * PT_ENOMEM or PT_EIO. Borrows everything. */
pt_status pt_timeline_trace(const pt_timeline_event *events, int n_events, const pt_timeline_opts *opts, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
