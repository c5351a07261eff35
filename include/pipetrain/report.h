/* pipetrain/report.h — one page to look at a training run: `pipetrain report RUN_DIR`.
 *
 * Reads what `pipetrain train` leaves in its run directory — metrics.jsonl (one JSON object per
 * step and per eval), config.json (the settings and the plan) and, when the run was profiled,
 * the profile's summary.json and timeline.svg — and writes ONE self-contained HTML file: a header
 * (model, parameters, steps done, final loss, tokens/s), the curves as inline SVG (training and
 * eval loss, eval accuracy, learning rate, tokens/s, gradient norm), the plan table with its
 * predictions, and the measured timeline with the bubble measured vs predicted per rank. The page
 * fetches nothing and runs no script; it opens from disk in any browser.
 *
 *     pt_report_opts o = { .run_dir = "runs/long" };    // writes runs/long/report.html
 *     pt_report_info info;
 *     pt_status st = pt_report_write(&o, &info);
 *
 * Missing pieces (no config.json, no eval lines, no profile, a last line still being written by a
 * run in progress) are not errors: the page says what is missing in a short note. A malformed
 * metrics line in the middle of the file is an error naming its line number. The trainer may call
 * pt_report_write at each eval and at the end of a run: readers of the page never see half of it.
 */
#ifndef PIPETRAIN_REPORT_H
#define PIPETRAIN_REPORT_H

#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Curves with more points than this are reduced to the minimum and maximum of each of
 * max_points/2 step buckets (the envelope stays visible; the page stays small). */
#define PT_REPORT_MAX_POINTS_DEFAULT 1000

typedef struct pt_report_opts {
    const char *run_dir;      /* required: the folder `train --run-dir` wrote */
    const char *metrics_path; /* NULL: <run_dir>/metrics.jsonl */
    const char *config_path;  /* NULL: <run_dir>/config.json (a missing file is a note, not an error) */
    const char *profile_dir;  /* the run's --profile DIR (not there yet: a note, as during a run, which writes
                               * it at the end); NULL: the first of <run_dir>/profile, <run_dir>/prof holding
                               * summary.json or timeline.svg (none: a note); "": no profile section at all */
    const char *output_path;  /* NULL: <run_dir>/report.html */
    const char *title;        /* page title; NULL: "pipetrain run <run_dir>" */
    int max_points;           /* points per curve at most (>= 4); <= 0 picks PT_REPORT_MAX_POINTS_DEFAULT */
} pt_report_opts;

/* What pt_report_write found (for the caller's one-line message). */
typedef struct pt_report_info {
    char output_path[4096]; /* the file written */
    long long n_step_lines; /* step records plotted (after a resume replaced the steps it redid) */
    long long last_step;    /* step of the last step record; 0 when there is none */
    int n_evals;            /* eval records plotted */
    int has_plan;           /* config.json held a plan (chunk_list) */
    int has_profile;        /* a profile summary.json or timeline.svg was shown */
    int n_notes;            /* notes on the page about missing or partial pieces */
} pt_report_info;

/* Reads the run directory and writes the page through a temporary file in the output's folder,
 * fsync and rename (a browser refreshing it, or a second writer, never sees half a page).
 * Returns PT_OK; PT_EINVAL when run_dir is not a directory or holds no metrics file (the message
 * says what a run directory holds) or an option is out of range; PT_EFORMAT naming
 * "<metrics file>:<line>" for a line that is not a JSON object with a numeric "step" (a last line
 * without its newline is taken as still being written: left out with a note), or naming
 * config.json / summary.json when they are not JSON; PT_EIO when a file cannot be read or the page
 * cannot be written; PT_ENOMEM. `info` may be NULL. Reads files and allocates; does not print.
 * Thread-safe for distinct output paths. */
pt_status pt_report_write(const pt_report_opts *opts, pt_report_info *info);

#ifdef __cplusplus
}
#endif
#endif
