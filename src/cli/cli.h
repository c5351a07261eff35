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

#endif
