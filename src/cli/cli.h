/* src/cli/cli.h — the subcommands of the pipetrain program. Each lives in its own file
 * src/cli/cmd_<name>.c and is compiled in when that file exists (CMake defines
 * PT_HAVE_CMD_<NAME> on commands.c alone, whose table main.c walks). Each returns the process
 * exit code and answers --help. `bench` dispatches in turn to bench/bench_<name>.c
 * (PT_HAVE_BENCH_<NAME>, the other table of commands.c).
 */
#ifndef PT_CLI_H
#define PT_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "pipetrain/comm.h"
#include "pipetrain/model.h"

/* One subcommand or benchmark: its name on the command line, its entry, one line for the usage. */
typedef struct pt_cli_entry {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} pt_cli_entry;

/* The subcommands built into this program (without `version`, main.c's own), ending with a NULL
 * name (src/cli/commands.c, which also holds the benchmarks' table). Static storage. */
const pt_cli_entry *pt_cli_commands(void);

int pt_cmd_train(int argc, char **argv);
int pt_cmd_prepare(int argc, char **argv);
int pt_cmd_plan(int argc, char **argv);
int pt_cmd_simulate(int argc, char **argv);
int pt_cmd_profile_layers(int argc, char **argv);
int pt_cmd_launch(int argc, char **argv);
int pt_cmd_ckpt(int argc, char **argv);
/* `pipetrain bench NAME ...` over `benches` (ending with a NULL name): commands.c hands it its table. */
int pt_cmd_bench(int argc, char **argv, const pt_cli_entry *benches);
int pt_cmd_tokenize(int argc, char **argv);
int pt_cmd_sample(int argc, char **argv);
int pt_cmd_report(int argc, char **argv);

/* `train --sample-every N` (src/cli/cmd_sample.c): a short continuation of a prompt from the model
 * being trained, through the KV-cache generator, made by the runtime's hooks (runtime.h) in every
 * layout. m (borrowed) is this rank's chunk (one contiguous layer range, not part of a split LM
 * head; in one process, every layer), stage its pipeline stage of n_stages, whose ranks are world
 * ranks 0..n_stages-1 of comm (data-parallel replica 0; comm may be NULL when n_stages is 1). Only
 * those ranks create one. tokenizer names the data's (pt_dataset_tokenizer); prompt "" means the
 * end-of-text token; n_new is cut to fit the context; temperature 0 is greedy; generation stops at
 * the tokenizer's end-of-text token. */
typedef struct pt_train_sampler pt_train_sampler;
pt_status pt_train_sampler_create_stage(pt_model *m, pt_comm *comm, int stage, int n_stages, const char *tokenizer,
                                        const char *prompt, int n_new, double temperature, uint64_t seed,
                                        pt_train_sampler **out);
/* Generates the sample of `step` from the current weights (reads them only: the training is
 * unchanged; collective over the n_stages ranks: the hidden state goes stage to stage as in
 * `pipetrain sample --stages`, every wait with the comm's timeout). */
pt_status pt_train_sampler_generate(pt_train_sampler *s, int64_t step);
/* Stage 0: writes the sample generate made for `step` to f ("sample at step N ...:", the text
 * between "---" lines; PT_EINVAL when there is none); other stages: nothing. */
pt_status pt_train_sampler_write(pt_train_sampler *s, int64_t step, FILE *f);
void pt_train_sampler_destroy(pt_train_sampler *s); /* accepts NULL */

/* ---- a job checked before it starts (src/cli/job_check.c; `train`, `launch`) ---- */

struct pt_runtime_train_args; /* pipetrain/runtime.h */

/* The failure of a check as a usage error (PT_EINVAL, exit status 2), its message kept: whatever
 * a check refused (a missing file, a plan over --mem-limit, a damaged manifest), the command as
 * asked cannot run. PT_OK, PT_EINVAL and PT_EINTERNAL (a bug) are returned as they are. */
pt_status pt_cli_as_usage(pt_status st);

/* Where the job would run: its ranks on this machine (1 for a one-process run), the world rank of
 * the first of them, the ranks of the whole job (0: the layout's P x D, unchecked), the CPU threads
 * each rank will use (0: all cores), and --force. */
typedef struct pt_job_check_opts {
    int local_ranks;
    int first_rank;
    int world;
    int threads_per_rank;
    int force;
} pt_job_check_opts;

typedef struct pt_job_check_result {
    int world, stages, replicas; /* the job's ranks (a schedule file's stage count wins) */
    double pred_bytes;           /* the planner's memory of the ranks on this machine */
    char note[512];              /* what --force let through ("" when nothing) */
} pt_job_check_result;

/* Checks a whole training job in the calling process before any rank is forked: the cores (local
 * ranks x threads more than 4x the cores is refused unless o->force), then the runtime's own job,
 * data, plan and schedule phases as the ranks will run them (ra->check_only: no comm, nothing
 * logged) — model config, settings (pt_train_cfg_check), data set and tokenizer, the plan (stages x
 * chunks against the layers, --layout, --mem-limit), the schedule (generator or file, validated) —
 * the job's rank count against o->world, the planner's memory of the local ranks against the RAM
 * (refused unless o->force), and with ra->train.resume the checkpoint: that there is one, that its
 * data tokenizer is this data's (pt_ckpt_check_data) and its model has this model's shapes.
 * PT_EINVAL with one line naming the thing and the fix (whatever status the refusing phase gave,
 * but PT_EINTERNAL); *res filled on PT_OK. Reads files, allocates and frees; prints nothing. */
pt_status pt_job_check(const struct pt_runtime_train_args *ra, const pt_job_check_opts *o, pt_job_check_result *res);

/* `train --resume`: the run's settings from its checkpoint, unless the command gave them. In: the
 * command's values and whether it gave each (an option or a --config key); steps, lr, lr_min and
 * warmup point at the command's variables, which are overwritten with the checkpoint's where not
 * given. Out: model (the checkpoint's config, has_model_config), data (data_source) and schedule (a
 * generator's name) where not given; line, one line for the user saying what was taken and what
 * changes; note, why a damaged `latest` was passed over (pt_ckpt_resolve), or "". */
typedef struct pt_job_resume {
    const char *model, *data, *schedule; /* borrowed, or pointing into this struct on return */
    int model_given, data_given, schedule_given;
    const char *precision;    /* --precision (NULL: the backend's default); the checkpoint's run's where not given */
    int precision_given;
    long long *steps, *warmup;
    double *lr, *lr_min;
    int steps_given, lr_given, lr_min_given, warmup_given;
    int reset_schedule; /* --reset-schedule: a changed --steps/--lr/--lr-min/--warmup re-plans the rate */
    int stages, replicas, tp; /* this command's layout, for `line` (tp 0: not given) */
    /* out */
    pt_model_config model_config;
    int has_model_config;
    int64_t ckpt_step;
    char model_name[64], data_buf[1024], schedule_buf[64], precision_buf[16];
    char step_dir[4096];
    char line[8192];
    char note[1024];
} pt_job_resume;

/* Reads the checkpoint under ckpt_dir (a root or a step directory) and applies it to *r as above.
 * PT_EINVAL with the fix when there is no checkpoint, when a given --steps (or --lr, --lr-min,
 * --warmup) differs from the checkpoint's run without r->reset_schedule ("the checkpoint's run has
 * --steps 600; pass --steps 600, or --reset-schedule to re-plan the learning rate over 900 steps").
 * A checkpoint that records no settings (older builds) leaves the command's. Prints nothing. */
pt_status pt_job_resume_apply(const char *ckpt_dir, pt_job_resume *r);
/* After pt_job_check (whose refusals, a tokenizer or model mismatch, come first): PT_EINVAL with the
 * fix when the checkpoint already is the last step of the run's --steps. */
pt_status pt_job_resume_finished(const pt_job_resume *r);

/* `pipetrain launch ... -- pipetrain train ARGS`: checks the train job (pt_job_check) with
 * local_ranks ranks here, the first of world rank first_rank, of world in all, in this process
 * (cmd_train.c; args as pt_cmd_train takes them, argv[0] "train"). Returns 0, or the exit code
 * after printing the one-line error. */
int pt_cmd_train_check(int argc, char **argv, int local_ranks, int first_rank, int world);

/* pt_cmd_launch with a check of the command before any rank starts: `check` (may be NULL) is
 * called with the command's argv from its subcommand on when the command is this program's train
 * (commands.c hands it pt_cmd_train_check; the comm tests build launch without train). */
typedef int (*pt_cli_launch_check_fn)(int argc, char **argv, int local_ranks, int first_rank, int world);
int pt_cmd_launch_checked(int argc, char **argv, pt_cli_launch_check_fn check);

/* Automatic restarts (`train --max-restarts N`, `launch --max-restarts N -- pipetrain train ...`). */
typedef struct pt_cli_restart {
    int max_restarts;     /* restarts allowed; 0: one launch, as pt_launch */
    const char *run_dir;  /* the job's run directory: metrics.jsonl says the step reached */
    const char *ckpt_dir; /* its checkpoint root: a restart resumes from what pt_ckpt_resolve takes */
    int64_t steps;        /* the run's --steps (0: unknown): a failure after the checkpoint of the last
                             step is not restarted (nothing is left to do) */
    double rejoin_timeout_s; /* several nodes: how long the leader waits for a node that dropped out to
                                connect again before giving up (<= 0: 300 s) */
    int min_nodes;        /* `--nodes MIN:MAX`: the fewest nodes the job may shrink to (<= 0 or >= the
                             launch's nodes: no shrink, a node that does not rejoin ends the job) */
    int dp, micro_batches; /* with min_nodes: the train command's --dp D and --micro-batches M (both
                              given in argv, which a shrink rewrites to D' = D x N'/N, M' = M x D/D') */
} pt_cli_restart;
/* pt_launch of argv (argc entries, NULL-terminated, room for one more: "--resume"), restarted when
 * a rank fails, up to r->max_restarts times. A failure SIGKILLs the other ranks at once
 * (pt_launch_opts.kill_on_failure); one line on stderr records it (rank, host, signal or exit
 * status, the step) and names the checkpoint the restart resumes from (adding --resume once one
 * exists, else from the start). The ranks see PT_RESTART_COUNT (the attempt, from 0) and, after a
 * failure, PT_RESTART_FAILED_AT_NS (CLOCK_REALTIME ns of the failure: train reports the recovery
 * time). Stops, naming every failure, when the restarts are used up or the job failed during the
 * same step three times (the first run and two restarts: a bad batch or a NaN, not bad luck).
 * Not restarted: a launch that stopped on the user's SIGINT/SIGTERM, or a launch that could not
 * start. Elastic shrink (several nodes, r->min_nodes < lo->nodes): when a node that dropped out
 * does not rejoin within r->rejoin_timeout_s and at least min_nodes remain, the leader renumbers
 * the remaining nodes (node 0 stays, the others keep their order), tells every agent its new node
 * rank and count in GO, and every node restarts its ranks with --dp and --micro-batches rewritten
 * so that the global batch M x B x D stays (one line says so); a shrink that cannot keep whole
 * replicas or the global batch ends the job with a line saying why. A job only shrinks: a node
 * it continued without is not taken back. Returns pt_launch's status (PT_ECOMM
 * when it gave up). */
pt_status pt_cli_launch_restarting(pt_launch_opts *lo, char **argv, int argc, const pt_cli_restart *r,
                                   int *exit_code);

/* bench/bench_<name>.c: `pipetrain bench <name> [--json] ...` */
int pt_bench_train(int argc, char **argv);
int pt_bench_schedule(int argc, char **argv);
int pt_bench_plan(int argc, char **argv);
int pt_bench_comm(int argc, char **argv);
int pt_bench_ckpt(int argc, char **argv);
int pt_bench_pipeline(int argc, char **argv);
int pt_bench_tokenize(int argc, char **argv);
int pt_bench_prepare(int argc, char **argv);
int pt_bench_sample(int argc, char **argv);
int pt_bench_zero(int argc, char **argv);
int pt_bench_optim(int argc, char **argv);
int pt_bench_fused(int argc, char **argv);

#endif
