/* `pipetrain tokenize`: text to token ids (whitespace-separated, one line) and, with --decode,
 * ids back to the exact bytes (pipetrain/tokenizer.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/tokenizer.h"

/* Reads a whole file ('-' or NULL: stdin) into a malloc'd, NUL-terminated buffer. */
static pt_status slurp(const char *path, char **buf, size_t *len)
{
    int use_stdin = !path || strcmp(path, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(path, "rb");
    if (!f)
        return pt_fail(PT_EIO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    pt_status st = PT_OK;
    while (b) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(b, cap + 1);
            if (!nb) {
                free(b);
                b = NULL;
            }
            b = nb;
        }
    }
    if (!b)
        st = pt_fail(PT_ENOMEM, "cannot hold %s in memory (%zu bytes read)", use_stdin ? "stdin" : path, n);
    else if (ferror(f))
        st = pt_fail(PT_EIO, "cannot read %s: %s", use_stdin ? "stdin" : path, strerror(errno));
    if (!use_stdin)
        fclose(f);
    if (st != PT_OK) {
        free(b);
        return st;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return PT_OK;
}

static pt_status write_ids(const int32_t *ids, size_t n)
{
    char buf[1 << 16];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 16 > sizeof buf) {
            if (fwrite(buf, 1, o, stdout) != o)
                return pt_fail(PT_EIO, "cannot write to stdout: %s", strerror(errno));
            o = 0;
        }
        char tmp[12];
        int k = 0;
        uint32_t v = (uint32_t)ids[i];
        do {
            tmp[k++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        if (i)
            buf[o++] = ' ';
        while (k)
            buf[o++] = tmp[--k];
    }
    buf[o++] = '\n';
    if (fwrite(buf, 1, o, stdout) != o || fflush(stdout) != 0)
        return pt_fail(PT_EIO, "cannot write to stdout: %s", strerror(errno));
    return PT_OK;
}

/* Parses whitespace-separated decimal ids. */
static pt_status parse_ids(const char *what, const char *s, size_t len, pt_tok_ids *out)
{
    size_t i = 0, count = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r' || s[i] == ','))
            i++;
        if (i >= len)
            break;
        size_t b = i;
        long long v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && v <= INT32_MAX)
            v = v * 10 + (s[i++] - '0');
        int sep = i >= len || s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r' || s[i] == ',';
        if (i == b || !sep || v > INT32_MAX)
            return pt_fail(PT_EINVAL, "%s: \"%.20s\" (id %zu, byte %zu) is not a token id; --decode reads "
                                      "whitespace-separated non-negative integers",
                           what, s + b, count, b);
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 4096;
            int32_t *p = realloc(out->ids, cap * sizeof *p);
            if (!p)
                return pt_fail(PT_ENOMEM, "cannot allocate %zu token ids", cap);
            out->ids = p;
            out->cap = cap;
        }
        out->ids[out->n++] = (int32_t)v;
        count++;
    }
    return PT_OK;
}

int pt_cmd_tokenize(int argc, char **argv)
{
    const char *tokenizer = "gpt2", *input = "-";
    int decode = 0, allow_special = 0;
    pt_opt opts[] = {
        { "tokenizer", PT_OPT_STRING, &tokenizer, "NAME|FILE",
          "gpt2, cl100k, o200k, byte, or a file: encoder.json, *.tiktoken, tokenizer.model, tokenizer.json", 0 },
        { "input", PT_OPT_STRING, &input, "FILE", "text to encode (or ids to decode); '-' reads stdin", 0 },
        { "decode", PT_OPT_FLAG, &decode, NULL, "read whitespace-separated ids and write their bytes", 0 },
        { "allow-special", PT_OPT_FLAG, &allow_special, NULL,
          "encode special tokens' text (<|endoftext|>, ...) as the special tokens; otherwise it is plain text", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain tokenize [--tokenizer NAME|FILE] [--input FILE] [--decode] [--allow-special]",
        "Encode text to token ids (one line, separated by spaces) or, with --decode, ids back to text.\n"
        "The whole input is read into memory; decode(encode(x)) gives x back byte for byte.",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        "examples:\n  echo 'Hello world' | pipetrain tokenize --tokenizer gpt2        # 15496 995 198\n"
        "  echo '15496 995' | pipetrain tokenize --tokenizer gpt2 --decode   # Hello world",
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    pt_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0;
    pt_tok_ids ids = { 0 };
    st = pt_tokenizer_open(tokenizer, &tok);
    if (st == PT_OK)
        st = slurp(input, &text, &len);
    if (st == PT_OK && !decode) {
        st = pt_tokenizer_encode(tok, text, len, allow_special ? PT_TOK_ALLOW_SPECIAL : 0, &ids);
        if (st == PT_OK)
            st = write_ids(ids.ids, ids.n);
    } else if (st == PT_OK) {
        st = parse_ids(strcmp(input, "-") == 0 ? "stdin" : input, text, len, &ids);
        char *out = NULL;
        size_t n = 0;
        if (st == PT_OK)
            st = pt_tokenizer_decode(tok, ids.ids, ids.n, &out, &n);
        if (st == PT_OK && (fwrite(out, 1, n, stdout) != n || fflush(stdout) != 0))
            st = pt_fail(PT_EIO, "cannot write to stdout: %s", strerror(errno));
        free(out);
    }
    free(ids.ids);
    free(text);
    pt_tokenizer_close(tok);
    return pt_cli_finish(st);
}
