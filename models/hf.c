/* Hugging Face GPT-2 weights in and out: names, the Conv1D [in, out] layout, safetensors files.
 * Llama-family checkpoints are hf_llama.c's; the entry points here hand llama configs to it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config_internal.h"
#include "hf_internal.h"
#include "pipetrain/model.h"
#include "pipetrain/safetensors.h"

typedef struct hf_map {
    const char *ours, *theirs;
    int transposed;
} hf_map;

/* Block tensors, after "blocks.<i>." / "h.<i>.". */
static const hf_map hf_block_map[] = {
    { "ln1.weight", "ln_1.weight", 0 },
    { "ln1.bias", "ln_1.bias", 0 },
    { "attn.qkv.weight", "attn.c_attn.weight", 1 },
    { "attn.qkv.bias", "attn.c_attn.bias", 0 },
    { "attn.proj.weight", "attn.c_proj.weight", 1 },
    { "attn.proj.bias", "attn.c_proj.bias", 0 },
    { "ln2.weight", "ln_2.weight", 0 },
    { "ln2.bias", "ln_2.bias", 0 },
    { "mlp.fc.weight", "mlp.c_fc.weight", 1 },
    { "mlp.fc.bias", "mlp.c_fc.bias", 0 },
    { "mlp.proj.weight", "mlp.c_proj.weight", 1 },
    { "mlp.proj.bias", "mlp.c_proj.bias", 0 },
};

static const hf_map hf_top_map[] = {
    { "wte.weight", "wte.weight", 0 },
    { "wpe.weight", "wpe.weight", 0 },
    { "lnf.weight", "ln_f.weight", 0 },
    { "lnf.bias", "ln_f.bias", 0 },
};

pt_status pt_model_hf_name(const char *name, char *hf, size_t cap, int *transposed)
{
    for (size_t i = 0; i < sizeof(hf_top_map) / sizeof(hf_top_map[0]); i++) {
        if (strcmp(name, hf_top_map[i].ours) == 0) {
            if ((size_t)snprintf(hf, cap, "%s", hf_top_map[i].theirs) >= cap)
                return pt_fail(PT_EINVAL, "name buffer of %zu bytes is too small for %s", cap, name);
            *transposed = hf_top_map[i].transposed;
            return PT_OK;
        }
    }
    int block = -1, used = 0;
    if (sscanf(name, "blocks.%d.%n", &block, &used) == 1 && used > 0 && block >= 0) {
        for (size_t i = 0; i < sizeof(hf_block_map) / sizeof(hf_block_map[0]); i++) {
            if (strcmp(name + used, hf_block_map[i].ours) == 0) {
                if ((size_t)snprintf(hf, cap, "h.%d.%s", block, hf_block_map[i].theirs) >= cap)
                    return pt_fail(PT_EINVAL, "name buffer of %zu bytes is too small for %s", cap, name);
                *transposed = hf_block_map[i].transposed;
                return PT_OK;
            }
        }
    }
    return pt_fail(PT_EINVAL, "\"%s\" is not a GPT-2 parameter name", name);
}

/* dst (cols, rows) = src (rows, cols) transposed. */
static void transpose(float *dst, const float *src, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
}

pt_status pt_model_load_hf_safetensors(pt_model *m, const char *path)
{
    const pt_model_config *cfg = pt_model_config_of(m);
    PT_CHECK(pt_hf_refuse_tp(m, path, "load"));
    if (cfg->arch == PT_ARCH_LLAMA)
        return pt_model_load_hf_llama(m, path);
    const pt_backend *be = pt_model_backend(m);
    pt_stream *stream = pt_model_stream(m);
    pt_safetensors *f = NULL;
    PT_CHECK(pt_safetensors_open(path, &f));
    pt_status st = PT_OK;
    size_t cap = pt_model_max_tensor_numel(m);
    float *host = malloc(cap * sizeof(float)), *tmp = malloc(cap * sizeof(float));
    if (!host || !tmp) {
        st = pt_fail(PT_ENOMEM, "out of memory loading %s (%zu floats)", path, cap);
        goto done;
    }
    for (int i = 0; i < pt_model_n_tensors(m); i++) {
        const pt_param *p = pt_model_tensor(m, i);
        char hf[128], prefixed[160];
        int tr = 0;
        PT_TRY(pt_model_hf_name(p->name, hf, sizeof(hf), &tr), done);
        const pt_safetensors_tensor *t = pt_safetensors_find(f, hf);
        if (!t) { /* whole-model checkpoints (GPT2LMHeadModel) prefix the names */
            snprintf(prefixed, sizeof(prefixed), "transformer.%s", hf);
            t = pt_safetensors_find(f, prefixed);
        }
        if (!t) {
            st = pt_fail(PT_EFORMAT, "%s: tensor \"%s\" (our %s) is missing; the file must hold a GPT-2 model in "
                                     "Hugging Face naming with this config's %d layers",
                         path, hf, p->name, cfg->n_layer);
            goto done;
        }
        int want0 = tr ? p->shape[1] : p->shape[0], want1 = tr ? p->shape[0] : p->shape[1];
        int ok = t->ndim == p->ndim && t->shape[0] == want0 && (p->ndim < 2 || t->shape[1] == want1);
        if (!ok) {
            char got[96] = "";
            for (int d = 0; d < t->ndim && d < 4; d++) {
                size_t len = strlen(got);
                snprintf(got + len, sizeof(got) - len, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            }
            if (strcmp(p->name, "wte.weight") == 0 && t->ndim == 2 && t->shape[0] == cfg->vocab_size &&
                t->shape[1] == want1 && cfg->vocab_padded != cfg->vocab_size)
                st = pt_fail(PT_EFORMAT, "%s: wte.weight has %d rows (vocab_size) but this config pads the vocabulary "
                                         "to %d rows, whose logits would join the softmax untrained; load it into a "
                                         "config with \"vocab_padded\": %d (a JSON config)",
                             path, cfg->vocab_size, cfg->vocab_padded, cfg->vocab_size);
            else if (p->ndim == 2)
                st = pt_fail(PT_EFORMAT, "%s: tensor \"%s\" has shape [%s] but the model needs [%d,%d]; the file is "
                                         "for a different config",
                             path, t->name, got, want0, want1);
            else
                st = pt_fail(PT_EFORMAT, "%s: tensor \"%s\" has shape [%s] but the model needs [%d]; the file is for "
                                         "a different config",
                             path, t->name, got, want0);
            goto done;
        }
        PT_TRY(pt_safetensors_read_f32(f, t, host, cap), done);
        const float *src = host;
        if (tr) {
            transpose(tmp, host, want0, want1);
            src = tmp;
        }
        PT_TRY(be->memcpy_h2d(stream, pt_model_params(m) + p->offset, src, p->numel * sizeof(float)), done);
        PT_TRY(be->stream_sync(stream), done); /* host buffers are reused for the next tensor */
    }
done:
    free(tmp);
    free(host);
    pt_safetensors_close(f);
    return st;
}

static int same_shape(const pt_model_config *a, const pt_model_config *b)
{
    return a->n_layer == b->n_layer && a->n_head == b->n_head && a->n_embd == b->n_embd &&
           a->vocab_size == b->vocab_size && a->vocab_padded == b->vocab_padded && a->max_seq_len == b->max_seq_len;
}

typedef struct export_item {
    pt_model *m;
    const pt_param *p;
    int tr;
} export_item;

pt_status pt_model_export_hf_safetensors(pt_model *const *models, int n, const char *path)
{
    if (n < 1)
        return pt_fail(PT_EINVAL, "export to %s: no models given", path);
    const pt_model_config *cfg = pt_model_config_of(models[0]);
    for (int k = 0; k < n; k++)
        PT_CHECK(pt_hf_refuse_tp(models[k], path, "export"));
    if (cfg->arch == PT_ARCH_LLAMA)
        return pt_model_export_hf_llama(models, n, path, NULL);
    for (int k = 1; k < n; k++)
        if (!same_shape(cfg, pt_model_config_of(models[k])))
            return pt_fail(PT_EINVAL, "export to %s: chunk %d has a different model config than chunk 0", path, k);
    pt_hf_owned *order = NULL;
    int n_items = 0;
    size_t cap = 1;
    PT_CHECK(pt_hf_export_order(models, n, path, &order, &n_items, &cap));
    export_item *items = calloc(n_items > 0 ? (size_t)n_items : 1, sizeof(*items));
    if (!items) {
        free(order);
        return pt_fail(PT_ENOMEM, "out of memory exporting %s", path);
    }
    pt_status st = PT_OK;
    float *host = NULL, *tmp = NULL;
    pt_safetensors_writer *w = NULL;
    for (int j = 0; j < n_items; j++) {
        items[j] = (export_item){ .m = order[j].m, .p = order[j].p };
        char hf[128];
        PT_TRY(pt_model_hf_name(items[j].p->name, hf, sizeof(hf), &items[j].tr), done);
    }
    host = malloc(cap * sizeof(float));
    tmp = malloc(cap * sizeof(float));
    if (!host || !tmp) {
        st = pt_fail(PT_ENOMEM, "out of memory exporting %s (%zu floats)", path, cap);
        goto done;
    }
    PT_TRY(pt_safetensors_writer_create(path, &w), done);
    char num[32];
    PT_TRY(pt_safetensors_writer_set_metadata(w, "format", "pt"), done);
    PT_TRY(pt_safetensors_writer_set_metadata(w, "producer", "pipetrain " PT_VERSION_STRING), done);
    const struct {
        const char *key;
        int value;
    } meta[] = { { "n_layer", cfg->n_layer },        { "n_head", cfg->n_head },
                 { "n_embd", cfg->n_embd },          { "vocab_size", cfg->vocab_size },
                 { "vocab_padded", cfg->vocab_padded }, { "max_seq_len", cfg->max_seq_len } };
    for (size_t i = 0; i < sizeof(meta) / sizeof(meta[0]); i++) {
        snprintf(num, sizeof(num), "%d", meta[i].value);
        PT_TRY(pt_safetensors_writer_set_metadata(w, meta[i].key, num), done);
    }
    for (int j = 0; j < n_items; j++) {
        const pt_param *p = items[j].p;
        char hf[128];
        int tr;
        PT_TRY(pt_model_hf_name(p->name, hf, sizeof(hf), &tr), done);
        int64_t shape[2] = { tr ? p->shape[1] : p->shape[0], tr ? p->shape[0] : p->shape[1] };
        PT_TRY(pt_safetensors_writer_declare(w, hf, PT_ST_F32, p->ndim, shape), done);
    }
    for (int j = 0; j < n_items; j++) {
        const pt_param *p = items[j].p;
        pt_model *m = items[j].m;
        PT_TRY(pt_model_backend(m)->memcpy_d2h(pt_model_stream(m), host, pt_model_params(m) + p->offset,
                                               p->numel * sizeof(float)),
               done);
        const float *src = host;
        if (items[j].tr) {
            transpose(tmp, host, p->shape[0], p->shape[1]);
            src = tmp;
        }
        PT_TRY(pt_safetensors_writer_write(w, src, p->numel * sizeof(float)), done);
    }
    PT_TRY(pt_safetensors_writer_finish(w), done);
done:
    pt_safetensors_writer_destroy(w);
    free(tmp);
    free(host);
    free(items);
    free(order);
    return st;
}

/* The one reader of a safetensors file's model config (model.h). */
pt_status pt_model_config_from_safetensors(const char *path, pt_model_config *cfg)
{
    struct stat sb;
    size_t len = strlen(path);
    if ((stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) || (len >= 5 && strcmp(path + len - 5, ".json") == 0))
        return pt_model_config_from_hf(path, cfg); /* a Hugging Face model directory */
    pt_safetensors *f;
    PT_CHECK(pt_safetensors_open(path, &f));
    pt_status st = PT_OK;
    if (!pt_safetensors_metadata(f, "n_layer") &&
        (pt_safetensors_find(f, "model.embed_tokens.weight") || pt_safetensors_metadata(f, "pipetrain_config"))) {
        pt_safetensors_close(f); /* Llama naming */
        return pt_model_config_from_hf(path, cfg);
    }
    if (pt_safetensors_metadata(f, "n_layer")) {
        memset(cfg, 0, sizeof *cfg);
        struct {
            const char *key;
            int *dst;
        } k[] = { { "n_layer", &cfg->n_layer },       { "n_head", &cfg->n_head },
                  { "n_embd", &cfg->n_embd },         { "vocab_size", &cfg->vocab_size },
                  { "vocab_padded", &cfg->vocab_padded }, { "max_seq_len", &cfg->max_seq_len },
                  { "n_ctx", &cfg->max_seq_len } };
        for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
            const char *v = pt_safetensors_metadata(f, k[i].key);
            if (v)
                *k[i].dst = atoi(v);
        }
        if (!cfg->vocab_padded)
            cfg->vocab_padded = cfg->vocab_size;
        const char *name = pt_safetensors_metadata(f, "model");
        snprintf(cfg->name, sizeof cfg->name, "%s", name ? name : "");
        st = pt_model_config_validate(cfg);
        pt_safetensors_close(f);
        return st;
    }
    const pt_safetensors_tensor *wte = pt_safetensors_find(f, "wte.weight"), *wpe = pt_safetensors_find(f, "wpe.weight");
    if (!wte || !wpe || wte->ndim != 2 || wpe->ndim != 2) {
        pt_safetensors_close(f);
        return pt_fail(PT_EINVAL, "%s has no GPT-2 config metadata and no wte/wpe tensors; pass --model NAME|FILE", path);
    }
    int n_layer = 0;
    char name[64];
    for (;;) {
        snprintf(name, sizeof name, "h.%d.ln_1.weight", n_layer);
        if (!pt_safetensors_find(f, name))
            break;
        n_layer++;
    }
    st = pt_fail(PT_EINVAL, "%s: no preset has %d blocks of width %lld with %lld positions; pass --model NAME|FILE", path,
                 n_layer, (long long)wte->shape[1], (long long)wpe->shape[0]);
    for (const char *const *p = pt_model_preset_names(); *p; p++) {
        pt_model_config c;
        if (!pt__model_config_preset(*p, &c))
            continue;
        if (c.n_layer == n_layer && c.n_embd == wte->shape[1] && c.max_seq_len == wpe->shape[0] &&
            (c.vocab_size == wte->shape[0] || c.vocab_padded == wte->shape[0])) {
            *cfg = c;
            st = PT_OK;
            break;
        }
    }
    pt_safetensors_close(f);
    return st;
}
