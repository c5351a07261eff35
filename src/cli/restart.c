/* Automatic restarts of a training job's local ranks (`train --max-restarts N`, `launch
 * --max-restarts N -- pipetrain train ...`): see cli.h, pt_cli_launch_restarting. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/timeutil.h"

#define MAX_FAILURES 64
#define SAME_STEP_LIMIT 3 /* failures at one step: the first run and two restarts */

typedef struct failure {
    pt_launch_failure f;
    int64_t step;    /* the step the job was running: the last logged + 1 */
    int64_t restore; /* the checkpoint step the restart took (-1: from the start) */
} failure;

/* The last "step" of RUN_DIR/metrics.jsonl (rank 0 writes one line per step, flushed), or -1. */
static int64_t last_logged_step(const char *run_dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[8192];
    int64_t last = -1;
    while (fgets(line, sizeof line, f)) {
        const char *s = strstr(line, "\"step\":");
        if (s && !strstr(line, "\"eval_loss\""))
            last = strtoll(s + 7, NULL, 10);
    }
    fclose(f);
    return last;
}

/* The step of the checkpoint a resume would take from ckpt_dir (pt_ckpt_resolve), or -1 with none. */
static int64_t resume_step(const char *ckpt_dir)
{
    char step_dir[4096], note[1024];
    if (!ckpt_dir || pt_ckpt_resolve(ckpt_dir, step_dir, sizeof step_dir, note, sizeof note) != PT_OK) {
        pt_clear_error();
        return -1;
    }
    const char *b = strrchr(step_dir, '/');
    b = b ? b + 1 : step_dir;
    return strncmp(b, "step_", 5) == 0 ? strtoll(b + 5, NULL, 10) : -1;
}

static void describe(const failure *x, char *buf, size_t cap)
{
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    if (x->f.signal)
        snprintf(buf, cap, "rank %d (host %s) was killed by signal %d (%s) during step %lld", x->f.rank, host,
                 x->f.signal, strsignal(x->f.signal), (long long)x->step);
    else
        snprintf(buf, cap, "rank %d (host %s) exited with status %d during step %lld", x->f.rank, host,
                 x->f.exit_status, (long long)x->step);
}

static void print_all(const failure *fs, int n)
{
    for (int i = 0; i < n; i++) {
        char d[256];
        describe(&fs[i], d, sizeof d);
        fprintf(stderr, "pipetrain:   failure %d: %s\n", i + 1, d);
    }
}

pt_status pt_cli_launch_restarting(pt_launch_opts *lo, char **argv, int argc, const pt_cli_restart *r, int *exit_code)
{
    if (r->max_restarts <= 0) {
        unsetenv("PT_RESTART_COUNT");
        return pt_launch(lo, argv, exit_code);
    }
    failure fs[MAX_FAILURES];
    int n_fail = 0, has_resume = 0;
    for (int i = 0; i < argc; i++)
        has_resume |= strcmp(argv[i], "--resume") == 0;
    pt_launch_failure f;
    lo->failure = &f;
    lo->kill_on_failure = 1; /* the survivors' state is discarded: the restart reloads the checkpoint */
    for (int attempt = 0;; attempt++) {
        char v[32];
        snprintf(v, sizeof v, "%d", attempt);
        setenv("PT_RESTART_COUNT", v, 1);
        pt_status st = pt_launch(lo, argv, exit_code);
        if (st != PT_ECOMM || f.rank < 0 || f.after_signal)
            return st; /* done, stopped (or failing) on the user's signal, or the launch itself failed */
        pt_clear_error();
        failure *x = &fs[n_fail < MAX_FAILURES ? n_fail : MAX_FAILURES - 1];
        x->f = f;
        x->step = last_logged_step(r->run_dir) + 1;
        if (x->step < 1)
            x->step = resume_step(r->ckpt_dir) + 1;
        x->restore = resume_step(r->ckpt_dir);
        if (r->steps > 0 && x->restore >= r->steps) {
            char d0[256];
            describe(x, d0, sizeof d0);
            fprintf(stderr, "pipetrain: %s, after the checkpoint of the last step (%lld) was written: not restarted\n",
                    d0, (long long)x->restore);
            return st;
        }
        if (n_fail < MAX_FAILURES)
            n_fail++;
        char d[256];
        describe(x, d, sizeof d);
        int same = 0;
        for (int i = 0; i < n_fail; i++)
            same += fs[i].step == x->step;
        if (attempt >= r->max_restarts) {
            fprintf(stderr, "pipetrain: %s; --max-restarts %d used up, stopping. Every failure:\n", d,
                    r->max_restarts);
            print_all(fs, n_fail);
            return pt_fail(PT_ECOMM, "%d failure%s, --max-restarts %d used up (the last: %s)", n_fail,
                           n_fail == 1 ? "" : "s", r->max_restarts, d);
        }
        if (same >= SAME_STEP_LIMIT) {
            fprintf(stderr,
                    "pipetrain: %s; the job failed during step %lld %d times (restarted %d times from the same "
                    "state), so it is stopped rather than looping. Every failure:\n",
                    d, (long long)x->step, same, same - 1);
            print_all(fs, n_fail);
            return pt_fail(PT_ECOMM,
                           "the job fails during step %lld every time (%d times); look at that step's batch or for a "
                           "NaN (the loss and grad_norm in %s/metrics.jsonl), then continue with --resume",
                           (long long)x->step, same, r->run_dir);
        }
        /* recovery time: from the failure to the restarted job's first step (its rank 0 reports it) */
        snprintf(v, sizeof v, "%lld", (long long)(pt_wall_ns() - (pt_now_ns() - f.at_ns)));
        setenv("PT_RESTART_FAILED_AT_NS", v, 1);
        if (x->restore >= 0 && !has_resume) {
            argv[argc++] = "--resume";
            argv[argc] = NULL;
            has_resume = 1;
        }
        if (x->restore >= 0)
            fprintf(stderr, "pipetrain: %s; restart %d of at most %d from checkpoint step %lld (%s)\n", d, attempt + 1,
                    r->max_restarts, (long long)x->restore, r->ckpt_dir);
        else
            fprintf(stderr, "pipetrain: %s; restart %d of at most %d from the start (no checkpoint in %s yet)\n", d,
                    attempt + 1, r->max_restarts, r->ckpt_dir);
        fflush(stderr);
    }
}
