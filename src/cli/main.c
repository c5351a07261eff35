/* pipetrain — the command-line program: dispatches to one subcommand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} pt_command;

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("pipetrain %s\n", PT_VERSION_STRING);
    return 0;
}

static const pt_command commands[] = {
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
    { "launch", pt_cmd_launch, "start N local ranks of a command" },
#endif
#ifdef PT_HAVE_CMD_CKPT
    { "ckpt", pt_cmd_ckpt, "inspect, verify, export and import checkpoints" },
#endif
#ifdef PT_HAVE_CMD_REPORT
    { "report", pt_cmd_report, "write one HTML page of a run: curves, plan, timeline, bubble" },
#endif
#ifdef PT_HAVE_CMD_BENCH
    { "bench", pt_cmd_bench, "measure speed (train, schedule, plan, comm, ckpt, pipeline)" },
#endif
    { "version", cmd_version, "print the version" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: pipetrain COMMAND [options]   (pipetrain COMMAND --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "pipetrain: unknown command '%s'; run 'pipetrain --help' for the list\n", argv[1]);
    return 2;
}
