/* src/cli/cli.h — the subcommands of the pipetrain program. Each lives in its own file
 * src/cli/cmd_<name>.c and is compiled in when that file exists (CMake defines
 * PT_HAVE_CMD_<NAME>); main.c lists them. Each returns the process exit code and answers
 * --help. `bench` dispatches in turn to bench/bench_<name>.c (PT_HAVE_BENCH_<NAME>).
 */
#ifndef PT_CLI_H
#define PT_CLI_H

int pt_cmd_train(int argc, char **argv);
int pt_cmd_prepare(int argc, char **argv);
int pt_cmd_plan(int argc, char **argv);
int pt_cmd_simulate(int argc, char **argv);
int pt_cmd_profile_layers(int argc, char **argv);
int pt_cmd_launch(int argc, char **argv);
int pt_cmd_ckpt(int argc, char **argv);
int pt_cmd_bench(int argc, char **argv);
int pt_cmd_tokenize(int argc, char **argv);
int pt_cmd_sample(int argc, char **argv);

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
