/* `pipetrain prepare`: text or JSON lines to llm.c token shards plus a sidecar (pt_prepare in
 * pipetrain/data.h, docs/data.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/data.h"

#define PREPARE_MAX_INPUTS 65536

int pt_cmd_prepare(int argc, char **argv)
{
    const char *input = NULL, *output = NULL, *tokenizer = "byte", *format = "auto";
    long long shard_tokens = 100000000, val_tokens = -1;
    int threads = 0, allow_special = 0, quiet = 0;
    pt_opt opts[] = {
        { "tokenizer", PT_OPT_STRING, &tokenizer, "NAME|FILE",
          "byte, gpt2, cl100k, o200k, or a file: encoder.json, a tiktoken rank file, tokenizer.json", 0 },
        { "input", PT_OPT_STRING, &input, "FILE|DIR|GLOB",
          "text or JSON lines; more inputs may follow as plain words ('-' reads stdin)", 0 },
        { "output", PT_OPT_STRING, &output, "DIR|FILE.bin",
          "a folder of shards DIR/DIR_val_000000.bin, DIR_train_000001.bin... + dataset.json, or one FILE.bin", 0 },
        { "shard-tokens", PT_OPT_INT64, &shard_tokens, "N", "tokens per shard (llm.c: 100M)", 0 },
        { "val-tokens", PT_OPT_INT64, &val_tokens, "N",
          "the first N tokens go to the val shards (-1: 1% of the estimated total, at least min(10%, 32768), at most "
          "10M)",
          0 },
        { "format", PT_OPT_STRING, &format, "auto|text|jsonl",
          "auto: *.jsonl, *.ndjson, *.json are JSON lines with a \"text\" field (one document each), the rest plain "
          "text (one document per file)",
          0 },
        { "threads", PT_OPT_INT, &threads, "N", "encoding threads (0: every core); the output does not depend on it",
          0 },
        { "allow-special", PT_OPT_FLAG, &allow_special, NULL,
          "recognise special tokens' text (<|endoftext|>...) in the input; otherwise it is plain text", 0 },
        { "quiet", PT_OPT_FLAG, &quiet, NULL, "no progress line", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain prepare --tokenizer NAME|FILE --input FILE|DIR|GLOB... --output DIR|FILE.bin [options]",
        "Tokenize text into llm.c token shards for 'pipetrain train --data DIR'.\n"
        "Documents are separated by the end-of-text token (before each document, as llm.c).\n"
        "The data set's tokenizer is recorded in a sidecar (DIR/dataset.json or FILE.bin.json).",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "examples:\n  pipetrain prepare --tokenizer gpt2 --input shakespeare.txt --output data/shakespeare\n"
        "  pipetrain prepare --tokenizer gpt2 --input 'corpus/*.jsonl' --output data/corpus --shard-tokens 10000000\n"
        "  pipetrain train --data data/shakespeare --model gpt2-small --steps 500",
    };
    char **pos = malloc(PREPARE_MAX_INPUTS * sizeof *pos);
    const char **inputs = malloc((PREPARE_MAX_INPUTS + 1) * sizeof *inputs);
    if (!pos || !inputs) {
        free(pos);
        free(inputs);
        return pt_cli_finish(pt_fail(PT_ENOMEM, "out of memory"));
    }
    int done = 0, n_pos = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, pos, PREPARE_MAX_INPUTS, &n_pos, &done);
    if (st == PT_OK && !done) {
        int fmt = strcmp(format, "auto") == 0    ? PT_PREP_AUTO
                  : strcmp(format, "text") == 0  ? PT_PREP_TEXT
                  : strcmp(format, "jsonl") == 0 ? PT_PREP_JSONL
                                                 : -1;
        if (!input || !output)
            st = pt_fail(PT_EINVAL, "prepare needs --input FILE|DIR|GLOB and --output DIR|FILE.bin; see 'pipetrain "
                                    "prepare --help'");
        else if (fmt < 0)
            st = pt_fail(PT_EINVAL, "--format %s: use auto, text or jsonl", format);
        else if (shard_tokens < 1)
            st = pt_fail(PT_EINVAL, "--shard-tokens %lld: give at least 1", shard_tokens);
        else if (threads < 0)
            st = pt_fail(PT_EINVAL, "--threads %d: give 0 (every core) or more", threads);
        else if (val_tokens < -1)
            st = pt_fail(PT_EINVAL, "--val-tokens %lld: give -1 (the default) or a count", val_tokens);
        if (st == PT_OK) {
            inputs[0] = input;
            for (int i = 0; i < n_pos; i++)
                inputs[1 + i] = pos[i];
            pt_prepare_opts po = { .tokenizer = tokenizer, .inputs = inputs, .n_inputs = 1 + n_pos,
                                   .output = output, .shard_tokens = shard_tokens, .val_tokens = val_tokens,
                                   .format = fmt, .threads = threads, .allow_special = allow_special,
                                   .progress = !quiet };
            pt_prepare_result r;
            st = pt_prepare(&po, &r);
            if (st == PT_OK)
                printf("prepared %s: %lld documents, %.1f MB -> %lld tokens (%s: %lld val, %lld train) in %d "
                       "shard%s, %.2f s (%.1f MB/s, %d thread%s); sidecar %s\n",
                       output, (long long)r.documents, (double)r.bytes / 1e6, (long long)r.tokens, tokenizer,
                       (long long)r.val_tokens, (long long)r.train_tokens, r.shards, r.shards == 1 ? "" : "s",
                       r.seconds, r.seconds > 0 ? (double)r.bytes / 1e6 / r.seconds : 0.0, r.threads,
                       r.threads == 1 ? "" : "s", r.sidecar);
        }
    }
    free(pos);
    free(inputs);
    return pt_cli_finish(st);
}
