/* `pipetrain prepare`: turns a text file into a token file (pipetrain/data.h, docs/data-format.md). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/data.h"

/* Byte-level tokenizer: every byte of the input is one token (vocab 256). Streams, so inputs larger
 * than memory work. */
static pt_status prepare_bytes(const char *input, const char *output, int64_t *n_out)
{
    FILE *f = strcmp(input, "-") == 0 ? stdin : fopen(input, "rb");
    if (!f)
        return pt_fail(PT_EIO, "cannot open %s: %s", input, strerror(errno));
    pt_token_writer *w;
    pt_status st = pt_token_writer_open(output, 256, &w);
    if (st != PT_OK) {
        if (f != stdin)
            fclose(f);
        return st;
    }
    unsigned char buf[1 << 16];
    int32_t tok[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < n; i++)
            tok[i] = buf[i];
        st = pt_token_writer_append(w, tok, n);
        if (st != PT_OK)
            break;
    }
    if (st == PT_OK && ferror(f))
        st = pt_fail(PT_EIO, "cannot read %s: %s", input, strerror(errno));
    if (f != stdin)
        fclose(f);
    if (st != PT_OK) {
        pt_token_writer_abort(w);
        return st;
    }
    return pt_token_writer_commit(w, n_out);
}

int pt_cmd_prepare(int argc, char **argv)
{
    const char *input = NULL, *output = NULL, *tokenizer = "byte";
    pt_opt opts[] = {
        { "input", PT_OPT_STRING, &input, "TEXT", "text file to tokenize ('-' reads stdin)", 0 },
        { "output", PT_OPT_STRING, &output, "TOKENS.bin", "token file to write", 0 },
        { "tokenizer", PT_OPT_STRING, &tokenizer, "byte",
          "byte: one token per byte, vocab 256 (gpt2 BPE is not built in: tokenize elsewhere and write the "
          "format in docs/data-format.md)",
          0 },
    };
    pt_cmd_spec spec = {
        "pipetrain prepare --input TEXT --output TOKENS.bin [--tokenizer byte]",
        "Turn a text file into a token file for 'pipetrain train --data TOKENS.bin'.\n"
        "The last 10% of the tokens are the held-out eval split.",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "example:\n  pipetrain prepare --input shakespeare.txt --output shakespeare.bin\n"
        "  pipetrain train --data shakespeare.bin --steps 500",
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (!input || !output)
        return pt_cli_finish(pt_fail(PT_EINVAL, "prepare needs --input TEXT and --output TOKENS.bin; see "
                                                "'pipetrain prepare --help'"));
    if (strcmp(tokenizer, "byte") != 0)
        return pt_cli_finish(pt_fail(PT_EINVAL,
                                     "tokenizer '%s' is not built in; use --tokenizer byte (gpt2 BPE: tokenize "
                                     "with another tool and write the format of docs/data-format.md)",
                                     tokenizer));
    int64_t n = 0;
    st = prepare_bytes(input, output, &n);
    if (st != PT_OK)
        return pt_cli_finish(st);
    printf("wrote %s: %lld tokens, vocab 256 (byte), 1 byte per token\n", output, (long long)n);
    return 0;
}
