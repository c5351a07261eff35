/* `pipetrain bench NAME ...`: dispatches to bench/bench_<name>.c (compiled in when present). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} pt_bench_entry;

static const pt_bench_entry benches[] = {
#ifdef PT_HAVE_BENCH_TRAIN
    { "train", pt_bench_train, "single-process training throughput (tokens/s, GFLOP/s, % of peak)" },
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
    { NULL, NULL, NULL },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: pipetrain bench NAME [--json] [options]   (pipetrain bench NAME --help for each)\n\n"
               "Benchmarks print one JSON object per line with --json.\n\nbenchmarks:\n");
    for (const pt_bench_entry *b = benches; b->name; b++)
        fprintf(f, "  %-10s %s\n", b->name, b->summary);
}

int pt_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    for (const pt_bench_entry *b = benches; b->name; b++)
        if (strcmp(argv[1], b->name) == 0)
            return b->run(argc - 1, argv + 1);
    fprintf(stderr, "pipetrain: unknown benchmark '%s'; run 'pipetrain bench --help' for the list\n", argv[1]);
    return 2;
}
