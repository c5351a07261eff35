/* Hugging Face tokenizer.json files of byte-level BPE models (GPT-2, Llama 3, Qwen2 style):
 * model.type "BPE" with model.vocab (strings in GPT-2's byte alphabet -> ids), model.merges ("a b"
 * strings or ["a", "b"] arrays, in rank order), added_tokens (recognised only with
 * PT_TOK_ALLOW_SPECIAL), and a pre_tokenizer made of ByteLevel (use_regex: GPT-2's pattern), Split
 * (a Regex or String pattern, behavior Isolated) and Sequence. Anything else is refused, naming the
 * key and what it holds, rather than encoded differently from the reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/json.h"
#include "tok_internal.h"

typedef struct hf_ctx {
    const char *path;
    tok_builder *b;
    unsigned char *tmp;
    size_t tmp_cap;
} hf_ctx;

static const char *type_of(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int is_null_or_absent(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v);
}

static int flag(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v);
    return dflt;
}

/* Maps a byte-alphabet string to bytes in ctx->tmp. Returns the count or -1. */
static long to_bytes(hf_ctx *c, const char *s, size_t len)
{
    if (len > c->tmp_cap) {
        unsigned char *n = realloc(c->tmp, len);
        if (!n)
            return -2;
        c->tmp = n;
        c->tmp_cap = len;
    }
    return tok_gpt2_str_to_bytes(s, len, c->tmp);
}

static pt_status pre_tokenizer(hf_ctx *c, const cJSON *pt, const char *where, int depth)
{
    if (!pt || cJSON_IsNull(pt))
        return PT_OK;
    const char *type = type_of(pt);
    if (!cJSON_IsObject(pt) || !type)
        return pt_fail(PT_EFORMAT, "%s: %s must be an object with a \"type\"", c->path, where);
    if (strcmp(type, "ByteLevel") == 0) {
        if (flag(pt, "add_prefix_space", 0))
            return pt_fail(PT_EFORMAT,
                           "%s: %s: ByteLevel with add_prefix_space true is not supported (pipetrain encodes the "
                           "text as given); set it to false",
                           c->path, where);
        if (flag(pt, "use_regex", 1))
            return tok_builder_add_pattern(c->b, tok_pattern_gpt2, 0, 0, c->path);
        return PT_OK;
    }
    if (strcmp(type, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(pt, "behavior");
        if (!cJSON_IsString(re) && !cJSON_IsString(str))
            return pt_fail(PT_EFORMAT, "%s: %s: Split needs \"pattern\": {\"Regex\": ...} or {\"String\": ...}", c->path,
                           where);
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0)
            return pt_fail(PT_EFORMAT, "%s: %s: Split behavior \"%s\" is not supported (only \"Isolated\")", c->path,
                           where, cJSON_IsString(beh) ? beh->valuestring : "(missing)");
        if (flag(pt, "invert", 0))
            return pt_fail(PT_EFORMAT, "%s: %s: Split with invert true is not supported", c->path, where);
        if (cJSON_IsString(re))
            return tok_builder_add_pattern(c->b, re->valuestring, 0, 0, c->path);
        if (!*str->valuestring)
            return pt_fail(PT_EFORMAT, "%s: %s: Split's String pattern is empty", c->path, where);
        return tok_builder_add_pattern(c->b, str->valuestring, 1, 0, c->path);
    }
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        if (!cJSON_IsArray(list))
            return pt_fail(PT_EFORMAT, "%s: %s: Sequence needs a \"pretokenizers\" array", c->path, where);
        if (depth > 4)
            return pt_fail(PT_EFORMAT, "%s: %s: Sequences nested too deep", c->path, where);
        int i = 0;
        for (const cJSON *it = list->child; it; it = it->next, i++) {
            char w[128];
            snprintf(w, sizeof w, "%.80s.pretokenizers[%d]", where, i);
            PT_CHECK(pre_tokenizer(c, it, w, depth + 1));
        }
        return PT_OK;
    }
    return pt_fail(PT_EFORMAT,
                   "%s: %s type \"%s\" is not supported (byte-level BPE takes ByteLevel, Split and Sequence)", c->path,
                   where, type);
}

static const char *const eot_names[] = { "<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<eos>" };

pt_status tok_load_hf(const char *path, const char *name, pt_tokenizer **out)
{
    *out = NULL;
    cJSON *root = NULL;
    PT_CHECK(pt_json_read_file(path, &root));
    hf_ctx c = { path, NULL, NULL, 0 };
    char what[512];
    pt_status st = tok_builder_create(name, &c.b);
    if (st != PT_OK)
        goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) {
        st = pt_fail(PT_EFORMAT, "%s: no \"model\" object; not a Hugging Face tokenizer.json", path);
        goto done;
    }
    const char *type = type_of(model);
    if (type && strcmp(type, "BPE") != 0) {
        st = pt_fail(PT_EFORMAT, "%s: model.type is \"%s\"; pipetrain reads byte-level BPE tokenizers (\"BPE\") only",
                     path, type);
        goto done;
    }
    if (!is_null_or_absent(model, "dropout")) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(model, "dropout");
        if (!cJSON_IsNumber(d) || d->valuedouble != 0) {
            st = pt_fail(PT_EFORMAT, "%s: model.dropout is set; BPE dropout is random, set it to null", path);
            goto done;
        }
    }
    static const char *const affixes[] = { "continuing_subword_prefix", "end_of_word_suffix" };
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && !*v->valuestring)) {
            st = pt_fail(PT_EFORMAT, "%s: model.%s is set; not a byte-level BPE (GPT-2 style) tokenizer", path,
                         affixes[i]);
            goto done;
        }
    }
    if (flag(model, "byte_fallback", 0)) {
        st = pt_fail(PT_EFORMAT,
                     "%s: model.byte_fallback is true: a SentencePiece-style BPE, not byte-level BPE; not supported",
                     path);
        goto done;
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        const char *nt = type_of(norm);
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(norm, "normalizers");
        int ok = nt && strcmp(nt, "NFC") == 0;
        if (nt && strcmp(nt, "Sequence") == 0 && cJSON_IsArray(list)) { /* a Sequence of NFCs */
            ok = 1;
            for (const cJSON *it = list->child; it; it = it->next)
                if (!type_of(it) || strcmp(type_of(it), "NFC") != 0) {
                    ok = 0;
                    nt = type_of(it);
                }
        }
        if (!ok) {
            st = pt_fail(PT_EFORMAT,
                         "%s: normalizer \"%s\" is not supported (only NFC is; byte-level BPE files with "
                         "\"normalizer\": null or NFC work)",
                         path, nt ? nt : "?");
            goto done;
        }
        tok_builder_set_nfc(c.b);
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) {
        st = pt_fail(PT_EFORMAT, "%s: added_tokens must be an array", path);
        goto done;
    }
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) {
        st = pt_fail(PT_EFORMAT, "%s: model.vocab must be an object of token -> id", path);
        goto done;
    }
    for (const cJSON *it = vocab->child; it; it = it->next) {
        const char *key = it->string;
        if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int32_t)it->valuedouble) {
            st = pt_fail(PT_EFORMAT, "%s: model.vocab \"%.60s\": the id must be an integer", path, key);
            goto done;
        }
        long nb = to_bytes(&c, key, strlen(key));
        if (nb == -2) {
            st = pt_fail(PT_ENOMEM, "tokenizer: out of memory");
            goto done;
        }
        if (nb < 0) {
            /* an added token may sit in the vocabulary in plain text (<|endoftext|> does: it maps) */
            int is_added = 0;
            for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
                const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
                if (cJSON_IsString(content) && strcmp(content->valuestring, key) == 0)
                    is_added = 1;
            }
            if (is_added)
                continue;
            st = pt_fail(PT_EFORMAT,
                         "%s: model.vocab \"%.60s\" has a character outside GPT-2's byte alphabet; not a byte-level "
                         "BPE vocabulary",
                         path, key);
            goto done;
        }
        snprintf(what, sizeof what, "%s: model.vocab \"%.60s\"", path, key);
        st = tok_builder_add(c.b, (int32_t)it->valuedouble, c.tmp, (size_t)nb, TOK_NO_RANK, what);
        if (st != PT_OK)
            goto done;
    }
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) {
        st = pt_fail(PT_EFORMAT, "%s: model.merges must be an array", path);
        goto done;
    }
    int32_t rank = 0;
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        const char *a = NULL, *bb = NULL;
        size_t al = 0, bl = 0;
        char *sp = NULL;
        if (cJSON_IsString(m)) {
            sp = strchr(m->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = m->valuestring;
                al = (size_t)(sp - a);
                bb = sp + 1;
                bl = strlen(bb);
            }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            a = m->child->valuestring;
            al = strlen(a);
            bb = m->child->next->valuestring;
            bl = strlen(bb);
        }
        if (!a || !al || !bl) {
            st = pt_fail(PT_EFORMAT, "%s: model.merges[%d] is not a merge (\"a b\" or [\"a\", \"b\"])", path, (int)rank);
            goto done;
        }
        long na = to_bytes(&c, a, al);
        int32_t left = na < 0 ? -1 : tok_builder_find(c.b, c.tmp, (size_t)na);
        long nb = to_bytes(&c, bb, bl);
        int32_t right = nb < 0 ? -1 : tok_builder_find(c.b, c.tmp, (size_t)nb);
        if (na == -2 || nb == -2) {
            st = pt_fail(PT_ENOMEM, "tokenizer: out of memory");
            goto done;
        }
        if (left < 0 || right < 0) {
            st = pt_fail(PT_EFORMAT, "%s: model.merges[%d] (\"%.*s\" + \"%.*s\") joins a token missing from model.vocab",
                         path, (int)rank, (int)(al > 40 ? 40 : al), a, (int)(bl > 40 ? 40 : bl), bb);
            goto done;
        }
        int rc = tok_builder_add_merge(c.b, left, right, rank);
        if (rc == -2) {
            st = pt_fail(PT_ENOMEM, "tokenizer: out of memory");
            goto done;
        }
        if (rc != 0) {
            st = pt_fail(PT_EFORMAT, "%s: model.merges[%d] (\"%.*s\" + \"%.*s\") makes a token missing from model.vocab",
                         path, (int)rank, (int)(al > 40 ? 40 : al), a, (int)(bl > 40 ? 40 : bl), bb);
            goto done;
        }
    }
    int i = 0;
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next, i++) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!cJSON_IsString(content) || !cJSON_IsNumber(id) || id->valuedouble != (double)(int32_t)id->valuedouble) {
            st = pt_fail(PT_EFORMAT, "%s: added_tokens[%d] needs a string \"content\" and an integer \"id\"", path, i);
            goto done;
        }
        snprintf(what, sizeof what, "%s: added_tokens[%d]", path, i);
        /* an added token that is an ordinary token too keeps the ordinary bytes: for the byte
         * alphabet's printable ASCII they are its text */
        st = tok_builder_add_special(c.b, content->valuestring, strlen(content->valuestring), (int32_t)id->valuedouble,
                                     what);
        if (st != PT_OK)
            goto done;
    }
    st = pre_tokenizer(&c, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer", 0);
    if (st != PT_OK)
        goto done;
    int32_t eot = -1;
    for (size_t k = 0; k < sizeof eot_names / sizeof *eot_names && eot < 0; k++)
        for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
            if (cJSON_IsString(content) && strcmp(content->valuestring, eot_names[k]) == 0)
                eot = (int32_t)cJSON_GetObjectItemCaseSensitive(a, "id")->valuedouble;
        }
    tok_builder_set_options(c.b, flag(model, "ignore_merges", 0), eot);
    st = tok_builder_finish(c.b, path, out);
    c.b = NULL;
done:
    tok_builder_destroy(c.b);
    free(c.tmp);
    cJSON_Delete(root);
    return st;
}
