/* pt_tokenizer_open (pipetrain/tokenizer.h): from a built-in name (byte, gpt2, cl100k, o200k) or a
 * path (encoder.json + vocab.bpe, a tiktoken rank file, tokenizer.model, tokenizer.json, or a
 * folder holding them) to the loader that reads it: tokenizer.c (byte, GPT-2, tiktoken) or
 * tok_hf.c (Hugging Face). It sits above both, so neither loader file needs the other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tok_internal.h"

/* PT_TOKENIZER_DIR, else the source tree's folder, else (an installed program whose source tree is
 * gone) the installed copy. */
static const char *vocab_dir(void)
{
    const char *d = getenv("PT_TOKENIZER_DIR");
    if (d && *d)
        return d;
#ifdef PT_TOKENIZER_DIR_INSTALLED
    struct stat sb;
    if (stat(PT_TOKENIZER_DIR_DEFAULT, &sb) != 0 && stat(PT_TOKENIZER_DIR_INSTALLED, &sb) == 0)
        return PT_TOKENIZER_DIR_INSTALLED;
#endif
    return PT_TOKENIZER_DIR_DEFAULT;
}

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Is this .json file a Hugging Face tokenizer.json (an object with a "model" key near the top)
 * rather than a GPT-2 encoder.json? */
static int looks_like_hf(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, "\"model\"") || strstr(buf, "\"added_tokens\"") || strstr(buf, "\"pre_tokenizer\"") ||
           strstr(buf, "\"normalizer\"") || strstr(buf, "\"truncation\"");
}

static pt_status open_path(const char *path, const char *name, pt_tokenizer **out)
{
    size_t n = strlen(path);
    char *a = malloc(n + 32), *c = malloc(n + 32);
    if (!a || !c) {
        free(a);
        free(c);
        return pt_fail(PT_ENOMEM, "tokenizer: out of memory");
    }
    pt_status st;
    const char *bn = base_name(path);
    int o200k = strstr(bn, "o200k") != NULL;
    if (is_dir(path)) {
        snprintf(a, n + 32, "%s/encoder.json", path);
        snprintf(c, n + 32, "%s/vocab.bpe", path);
        if (is_file(a) && is_file(c)) {
            st = tok_load_gpt2(a, c, name, out);
            goto done;
        }
        snprintf(a, n + 32, "%s/tokenizer.json", path);
        if (is_file(a)) {
            st = tok_load_hf(a, name, out);
            goto done;
        }
        snprintf(a, n + 32, "%s/tokenizer.model", path);
        if (is_file(a)) {
            st = tok_load_tiktoken(a, name, o200k, out);
            goto done;
        }
        st = pt_fail(PT_EINVAL,
                     "%s: a folder without encoder.json + vocab.bpe, tokenizer.json or tokenizer.model; name one "
                     "of those files",
                     path);
        goto done;
    }
    if (n >= 5 && strcmp(path + n - 5, ".json") == 0) {
        if (looks_like_hf(path) && strcmp(bn, "encoder.json") != 0) {
            st = tok_load_hf(path, name, out);
            goto done;
        }
        /* encoder.json: vocab.bpe beside it */
        size_t dl = (size_t)(bn - path);
        snprintf(c, n + 32, "%.*svocab.bpe", (int)dl, path);
        if (!is_file(c)) {
            st = pt_fail(PT_EIO, "%s: GPT-2's merges file %s is missing (it must sit beside encoder.json)", path, c);
            goto done;
        }
        st = tok_load_gpt2(path, c, name, out);
        goto done;
    }
    st = tok_load_tiktoken(path, name, o200k, out);
done:
    free(a);
    free(c);
    return st;
}

pt_status pt_tokenizer_open(const char *name_or_path, pt_tokenizer **out)
{
    *out = NULL;
    if (!name_or_path || !*name_or_path)
        return pt_fail(PT_EINVAL, "no tokenizer named; use byte, gpt2, cl100k, o200k or a file");
    const char *s = name_or_path;
    if (strcmp(s, "byte") == 0)
        return tok_open_byte(out);
    const char *dir = vocab_dir();
    char path[4096];
    pt_status st;
    if (strcmp(s, "gpt2") == 0) {
        char bpe[4096];
        snprintf(path, sizeof path, "%s/gpt2/encoder.json", dir);
        snprintf(bpe, sizeof bpe, "%s/gpt2/vocab.bpe", dir);
        if (!is_file(path) || !is_file(bpe))
            return pt_fail(PT_EIO,
                           "the built-in gpt2 vocabulary is missing (%s, %s); set PT_TOKENIZER_DIR to a folder "
                           "holding gpt2/encoder.json and gpt2/vocab.bpe, or run scripts/make-vocab.sh",
                           path, bpe);
        return tok_load_gpt2(path, bpe, "gpt2", out);
    }
    if (strcmp(s, "cl100k") == 0 || strcmp(s, "cl100k_base") == 0 || strcmp(s, "o200k") == 0 ||
        strcmp(s, "o200k_base") == 0) {
        int o = s[0] == 'o';
        snprintf(path, sizeof path, "%s/%s.tiktoken", dir, o ? "o200k_base" : "cl100k_base");
        if (!is_file(path))
            return pt_fail(PT_EIO,
                           "the built-in %s vocabulary %s is missing; set PT_TOKENIZER_DIR to the folder holding "
                           "it, or run scripts/make-vocab.sh",
                           o ? "o200k" : "cl100k", path);
        st = tok_load_tiktoken(path, o ? "o200k" : "cl100k", o, out);
        return st;
    }
    struct stat sb;
    if (stat(s, &sb) != 0)
        return pt_fail(PT_EINVAL,
                       "unknown tokenizer '%s': use byte, gpt2, cl100k, o200k, or a file (encoder.json, "
                       "*.tiktoken, tokenizer.model, tokenizer.json, or a folder holding them)",
                       s);
    return open_path(s, s, out);
}
