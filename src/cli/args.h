/* src/cli/args.h — the one option parser of the pipetrain program and its bench commands.
 * It gives every subcommand the same --help layout and the same one-line errors.
 *
 *     int steps = 100; const char *model = "gpt2-tiny"; int json = 0;
 *     pt_opt opts[] = {
 *         { "steps", PT_OPT_INT, &steps, "N", "optimizer steps to run" },
 *         { "model", PT_OPT_STRING, &model, "NAME|FILE", "preset name or JSON config" },
 *         { "json", PT_OPT_FLAG, &json, NULL, "print results as JSON lines" },
 *     };
 *     pt_cmd_spec spec = { "pipetrain train [options]", "Train a model.", opts, 3, NULL };
 *     int done = 0;
 *     pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
 *     if (st != PT_OK || done) return pt_cli_finish(st);
 *
 * This file is CLI code (not libpipetrain): it may print --help to stdout.
 */
#ifndef PT_CLI_ARGS_H
#define PT_CLI_ARGS_H

#include <stddef.h>

#include "pipetrain/status.h"

typedef enum pt_opt_type {
    PT_OPT_FLAG,   /* int, set to 1 when present */
    PT_OPT_INT,    /* int */
    PT_OPT_INT64,  /* long long */
    PT_OPT_DOUBLE, /* double */
    PT_OPT_STRING, /* const char *, borrowed from argv */
    PT_OPT_BYTES,  /* size_t; accepts 123, 64K, 512M, 24G, 1T (powers of 1024) and 1.5G */
} pt_opt_type;

typedef struct pt_opt {
    const char *name;    /* long name without dashes: "micro-batches" for --micro-batches */
    pt_opt_type type;
    void *dst;           /* where the value goes (type above) */
    const char *metavar; /* shown in --help ("N", "FILE"); NULL for flags */
    const char *help;    /* one line; the default is shown from *dst when not a flag */
    int seen;            /* set to 1 by the parser when the option was given */
    const char *alias;   /* NULL, or the option's old spelling ("mem" for --mem-limit): still accepted for one
                          * release, with a one-line deprecation notice on stderr; not shown in --help */
    const char *default_text; /* NULL: --help shows the default from *dst; else this text instead ("8 at
                               * --stages 2, 16 at 4"), for defaults that other options decide */
} pt_opt;

typedef struct pt_cmd_spec {
    const char *usage;   /* "pipetrain simulate --schedule NAME|FILE --stages P ..." */
    const char *summary; /* one or more lines of what it does */
    pt_opt *opts;
    int n_opts;
    const char *epilog;  /* examples, printed after the options; may be NULL */
} pt_cmd_spec;

/* Parses argv[1..argc-1] (argv[0] is the command name). Accepts --name VALUE and --name=VALUE.
 * Words that are not options go to pos[] (at most max_pos; PT_EINVAL past that); everything
 * after a bare "--" goes to pos[] unparsed. -h/--help prints the help and sets *done = 1.
 * Returns PT_EINVAL with a message naming the option and saying what it expects. */
pt_status pt_args_parse(pt_cmd_spec *spec, int argc, char **argv, char **pos, int max_pos, int *n_pos, int *done);

/* pt_args_parse for a command that takes exactly `n` positional words, described by `what`
 * ("the checkpoint directory", "DIR and OUT"): any other count is PT_EINVAL
 * "<argv[0]> needs <what> (usage: <spec->usage>)". pos must hold n entries. */
pt_status pt_args_parse_n(pt_cmd_spec *spec, int argc, char **argv, char **pos, int n, const char *what, int *done);

/* Checks an enumerated option's value: sets *idx to the index of `val` in the NULL-terminated
 * `names` and returns PT_OK, or returns PT_EINVAL "--<opt> 'foo' is not one of: a, b, c" (with
 * `extra`, e.g. "or a schedule file", after the list when not NULL). */
pt_status pt_args_enum(const char *opt, const char *val, const char *const *names, const char *extra, int *idx);

/* Prints the help of `spec` to stdout. */
void pt_args_print_help(const pt_cmd_spec *spec);

/* Parses the value of --head-split: a count of LM-head layers (1..256), "auto"
 * (PT_HEAD_SPLIT_AUTO: the planner chooses), or NULL/"" (0: the model config's own). PT_EINVAL
 * naming the option otherwise. */
pt_status pt_args_head_split(const char *text, int *k);

/* Parses the value of --head-chunk: a count of token rows (1..2^24), "auto" or NULL/"" (0: the
 * default, pt_model_head_chunk_auto), or "off" (PT_HEAD_CHUNK_OFF). PT_EINVAL naming the option
 * otherwise. */
pt_status pt_args_head_chunk(const char *text, int *rows);

/* Parses a byte size such as "24G" or "1.5G" or "4096". PT_EINVAL on anything else. */
pt_status pt_args_parse_bytes(const char *text, size_t *out);

/* Finishes a command: PT_OK -> 0; otherwise prints "pipetrain: <message>" (one line) to stderr
 * and returns the status's exit code. */
int pt_cli_finish(pt_status st);

/* The median of n timings (n >= 1), which it sorts in place, ascending (x[0] is then the
 * fastest): the middle value, or the mean of the middle two. The benchmarks' one statistic. */
double pt_cli_median(double *x, size_t n);

#endif
