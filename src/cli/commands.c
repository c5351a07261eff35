/* The subcommands and benchmarks this program was built with (cli.h): the one file that sees
 * which are present. src/cli/CMakeLists.txt defines PT_HAVE_CMD_<NAME> / PT_HAVE_BENCH_<NAME> for
 * each src/cli/cmd_<name>.c and bench/bench_<name>.c, on this file alone; main.c walks the
 * commands and cmd_bench.c the benchmarks it is handed. */
#include "cli.h"

static const pt_cli_entry benches[] = {
#ifdef PT_HAVE_BENCH_TRAIN
    { "train", pt_bench_train, "one-process training throughput (tokens/s, GFLOP/s, % of peak)" },
#endif
#ifdef PT_HAVE_BENCH_SCHEDULE
    { "schedule", pt_bench_schedule, "simulated bubble and memory per schedule; generation speed" },
#endif
#ifdef PT_HAVE_BENCH_PLAN
    { "plan", pt_bench_plan, "planning time and predicted MFU for large models" },
#endif
#ifdef PT_HAVE_BENCH_COMM
    { "comm", pt_bench_comm, "transport bandwidth and latency per message size and provider" },
#endif
#ifdef PT_HAVE_BENCH_CKPT
    { "ckpt", pt_bench_ckpt, "checkpoint save/load speed and compression ratios" },
#endif
#ifdef PT_HAVE_BENCH_PIPELINE
    { "pipeline", pt_bench_pipeline, "pipeline throughput and measured vs predicted bubble" },
#endif
#ifdef PT_HAVE_BENCH_TOKENIZE
    { "tokenize", pt_bench_tokenize, "tokenizer encode speed (MB/s per core) and exactness" },
#endif
#ifdef PT_HAVE_BENCH_PREPARE
    { "prepare", pt_bench_prepare, "prepare speed (MB/s) on every core vs one, same output" },
#endif
#ifdef PT_HAVE_BENCH_SAMPLE
    { "sample", pt_bench_sample, "text generation speed with the KV cache (tokens/s)" },
#endif
#ifdef PT_HAVE_BENCH_ZERO
    { "zero", pt_bench_zero, "ZeRO-1 and overlapped reduction vs plain data parallel: step, comm, optimizer memory" },
#endif
#ifdef PT_HAVE_BENCH_OPTIM
    { "optim", pt_bench_optim, "the AdamW step: one call per tensor vs one multi-tensor call" },
#endif
#ifdef PT_HAVE_BENCH_FUSED
    { "fused", pt_bench_fused, "fused residual-norm and bias-GELU kernels vs the split calls they replace" },
#endif
    { NULL, NULL, NULL },
};

#ifdef PT_HAVE_CMD_BENCH
/* `pipetrain bench`: cmd_bench.c dispatches over the table it is given (so it needs nothing from
 * this file) */
static int run_bench(int argc, char **argv) { return pt_cmd_bench(argc, argv, benches); }
#endif

#if defined(PT_HAVE_CMD_LAUNCH) && defined(PT_HAVE_CMD_TRAIN)
/* `pipetrain launch ... -- pipetrain train ...` checks the train job before it starts a rank */
static int run_launch(int argc, char **argv) { return pt_cmd_launch_checked(argc, argv, pt_cmd_train_check); }
#elif defined(PT_HAVE_CMD_LAUNCH)
static int run_launch(int argc, char **argv) { return pt_cmd_launch(argc, argv); }
#endif

static const pt_cli_entry commands[] = {
#ifdef PT_HAVE_CMD_TRAIN
    { "train", pt_cmd_train, "train a model (no arguments: gpt2-tiny on the built-in data set)" },
#endif
#ifdef PT_HAVE_CMD_PREPARE
    { "prepare", pt_cmd_prepare, "tokenize text (files, folders, JSON lines) into token shards" },
#endif
#ifdef PT_HAVE_CMD_TOKENIZE
    { "tokenize", pt_cmd_tokenize, "text to token ids and back (gpt2, cl100k, o200k, a tokenizer file)" },
#endif
#ifdef PT_HAVE_CMD_SAMPLE
    { "sample", pt_cmd_sample, "generate text from a checkpoint or a safetensors file" },
#endif
#ifdef PT_HAVE_CMD_PLAN
    { "plan", pt_cmd_plan, "partition a model across devices and predict its speed and memory" },
#endif
#ifdef PT_HAVE_CMD_SIMULATE
    { "simulate", pt_cmd_simulate, "validate and simulate a pipeline schedule; draw its timeline" },
#endif
#ifdef PT_HAVE_CMD_PROFILE_LAYERS
    { "profile-layers", pt_cmd_profile_layers, "time each layer on this machine and write a cost file" },
#endif
#ifdef PT_HAVE_CMD_LAUNCH
    { "launch", run_launch, "start N local ranks of a command" },
#endif
#ifdef PT_HAVE_CMD_CKPT
    { "ckpt", pt_cmd_ckpt, "inspect, verify, export and import checkpoints" },
#endif
#ifdef PT_HAVE_CMD_REPORT
    { "report", pt_cmd_report, "write one HTML page of a run: curves, plan, timeline, bubble" },
#endif
#ifdef PT_HAVE_CMD_BENCH
    { "bench", run_bench, "measure speed (train, schedule, plan, comm, ckpt, pipeline)" },
#endif
    { NULL, NULL, NULL },
};


const pt_cli_entry *pt_cli_commands(void) { return commands; }
