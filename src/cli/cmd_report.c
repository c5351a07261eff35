/* `pipetrain report RUN_DIR`: one self-contained HTML page of a training run (curves, plan,
 * measured timeline, bubble measured vs predicted), through pt_report_write (pipetrain/report.h). */
#include <stdio.h>
#include <sys/stat.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/report.h"

int pt_cmd_report(int argc, char **argv)
{
    const char *output = NULL, *profile = NULL, *metrics = NULL, *title = NULL;
    int max_points = PT_REPORT_MAX_POINTS_DEFAULT;
    pt_opt opts[] = {
        { "output", PT_OPT_STRING, &output, "FILE", "where the page goes (default RUN_DIR/report.html)", 0 },
        { "profile", PT_OPT_STRING, &profile, "DIR",
          "the run's profile folder (train --profile DIR; default RUN_DIR/profile or RUN_DIR/prof when present)", 0 },
        { "metrics", PT_OPT_STRING, &metrics, "FILE", "the metrics lines (default RUN_DIR/metrics.jsonl)", 0 },
        { "title", PT_OPT_STRING, &title, "TEXT", "the page's title (default: pipetrain run RUN_DIR)", 0 },
        { "max-points", PT_OPT_INT, &max_points, "N",
          "points per curve at most; longer curves keep each stretch's minimum and maximum", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain report RUN_DIR [--output FILE] [--profile DIR]",
        "Write one self-contained HTML page (inline SVG, no script, nothing fetched) for a training run:\n"
        "the loss, eval, learning-rate, tokens/s, gradient-norm and step-time curves from metrics.jsonl,\n"
        "the plan and its predictions from config.json, and, when the run was profiled, the measured\n"
        "timeline and the bubble measured vs predicted per rank. Works on a run still in progress.",
        opts, (int)(sizeof opts / sizeof opts[0]),
        "examples:\n"
        "  pipetrain train --steps 200 --eval-every 50 --profile runs/a/prof --run-dir runs/a\n"
        "  pipetrain report runs/a                      # runs/a/report.html\n"
        "  pipetrain report runs/a --output /tmp/a.html\n",
    };
    char *pos[1];
    int done = 0;
    pt_status st = pt_args_parse_n(&spec, argc, argv, pos, 1, "the run directory", &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (max_points < 4)
        return pt_cli_finish(pt_fail(PT_EINVAL, "--max-points %d: a curve needs at least 4 points", max_points));
    struct stat sb;
    if (profile && (stat(profile, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        return pt_cli_finish(pt_fail(PT_EINVAL, "--profile %s: no such directory; give the DIR the run had as "
                                                "train --profile DIR",
                                     profile));
    pt_report_opts o = { .run_dir = pos[0], .metrics_path = metrics, .profile_dir = profile, .output_path = output,
                         .title = title, .max_points = max_points };
    pt_report_info info;
    st = pt_report_write(&o, &info);
    if (st == PT_OK)
        printf("report: %s (%lld steps, %d evals%s%s%s)\n", info.output_path, info.last_step, info.n_evals,
               info.has_plan ? ", plan" : "", info.has_profile ? ", profile" : "",
               info.n_notes ? "; see the notes at the top" : "");
    return pt_cli_finish(st);
}
