/* Model configs: presets, JSON config objects, validation, parameter counts (loading a named
 * model: config_load.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/json.h"
#include "config_internal.h"
#include "pipetrain/model.h"

/* Limits beyond which a config is refused as absurd (a typo, not a model). */
#define PT_CFG_MAX_LAYERS 4096
#define PT_CFG_MAX_HEADS 1024
#define PT_CFG_MAX_EMBD 65536
#define PT_CFG_MAX_VOCAB (1 << 24)
#define PT_CFG_MAX_SEQ (1 << 20)
#define PT_CFG_MAX_HEAD_SPLIT 256

typedef struct cfg_preset {
    const char *name;
    int n_layer, n_head, n_embd, vocab_size, vocab_padded, max_seq_len;
    /* llama presets only */
    int llama, n_kv_head, intermediate_size, tie;
    float eps;
    double theta, scale_factor; /* scale_factor: Llama 3.1 RoPE scaling (low 1, high 4, original 8192) */
} cfg_preset;

/* The 50257-token presets pad the vocabulary to 50304 (a multiple of 128) as llm.c does, so
 * the LM-head GEMM runs on friendly shapes; the padded rows are never targets. */
static const cfg_preset cfg_presets[] = {
    { "gpt2-tiny", 4, 4, 128, 256, 256, 256, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    { "gpt2-small", 6, 6, 384, 50257, 50304, 1024, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    { "gpt2", 12, 12, 768, 50257, 50304, 1024, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    { "gpt2-medium", 24, 16, 1024, 50257, 50304, 1024, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    { "gpt2-large", 36, 20, 1280, 50257, 50304, 1024, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    { "gpt2-xl", 48, 25, 1600, 50257, 50304, 1024, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    /* Planning shapes (GPT-3 paper, Table 2.1; 13B uses width 5120 so 40 heads divide it). */
    { "gpt3-2.7b", 32, 32, 2560, 50257, 50304, 2048, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    { "gpt3-6.7b", 32, 32, 4096, 50257, 50304, 2048, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    { "gpt3-13b", 40, 40, 5120, 50257, 50304, 2048, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    { "gpt3-175b", 96, 96, 12288, 50257, 50304, 2048, 0, 0, 0, 0, 0.0f, 0.0, 0.0 },
    /* Llama. llama-tiny runs in seconds on 2 cores (tests, demos; 6 blocks, so that 4 stages of
     * zbv's 2 chunks each have a layer); llama-small is ~100M
     * parameters (Llama 2's 32000-token vocabulary, tied head). The rest are the published
     * configs (Hugging Face config.json of meta-llama/Llama-3.2-1B, -3B, Meta-Llama-3-8B, -70B,
     * Llama-3.1-405B), for planning and simulation. */
    { "llama-tiny", 6, 4, 128, 256, 256, 256, 1, 2, 352, 0, 1e-5f, 10000.0, 0 },
    { "llama-small", 12, 12, 768, 32000, 32000, 1024, 1, 4, 2048, 1, 1e-5f, 10000.0, 0 },
    { "llama3.2-1b", 16, 32, 2048, 128256, 128256, 131072, 1, 8, 8192, 1, 1e-5f, 500000.0, 32.0 },
    { "llama3.2-3b", 28, 24, 3072, 128256, 128256, 131072, 1, 8, 8192, 1, 1e-5f, 500000.0, 32.0 },
    { "llama3-8b", 32, 32, 4096, 128256, 128256, 8192, 1, 8, 14336, 0, 1e-5f, 500000.0, 0 },
    { "llama3-70b", 80, 64, 8192, 128256, 128256, 8192, 1, 8, 28672, 0, 1e-5f, 500000.0, 0 },
    { "llama3-405b", 126, 128, 16384, 128256, 128256, 131072, 1, 8, 53248, 0, 1e-5f, 500000.0, 8.0 },
};
#define CFG_N_PRESETS ((int)(sizeof(cfg_presets) / sizeof(cfg_presets[0])))

static const char *const cfg_preset_names[CFG_N_PRESETS + 1] = {
    "gpt2-tiny",   "gpt2-small",  "gpt2",        "gpt2-medium", "gpt2-large", "gpt2-xl",
    "gpt3-2.7b",   "gpt3-6.7b",   "gpt3-13b",    "gpt3-175b",   "llama-tiny", "llama-small",
    "llama3.2-1b", "llama3.2-3b", "llama3-8b",   "llama3-70b",  "llama3-405b", NULL,
};

const char *const *pt_model_preset_names(void) { return cfg_preset_names; }

pt_status pt_model_config_validate(const pt_model_config *c)
{
    const char *who = c->name[0] ? c->name : "model config";
    if (c->n_layer < 1 || c->n_layer > PT_CFG_MAX_LAYERS)
        return pt_fail(PT_EINVAL, "%s: n_layer is %d; it must be between 1 and %d", who, c->n_layer, PT_CFG_MAX_LAYERS);
    if (c->n_head < 1 || c->n_head > PT_CFG_MAX_HEADS)
        return pt_fail(PT_EINVAL, "%s: n_head is %d; it must be between 1 and %d", who, c->n_head, PT_CFG_MAX_HEADS);
    if (c->n_embd < 1 || c->n_embd > PT_CFG_MAX_EMBD)
        return pt_fail(PT_EINVAL, "%s: n_embd is %d; it must be between 1 and %d", who, c->n_embd, PT_CFG_MAX_EMBD);
    if (c->n_embd % c->n_head != 0)
        return pt_fail(PT_EINVAL, "%s: n_head %d does not divide n_embd %d; choose n_head so that n_embd / n_head is "
                                  "a whole head width",
                       who, c->n_head, c->n_embd);
    if (c->vocab_size < 2 || c->vocab_size > PT_CFG_MAX_VOCAB)
        return pt_fail(PT_EINVAL, "%s: vocab_size is %d; it must be between 2 and %d", who, c->vocab_size,
                       PT_CFG_MAX_VOCAB);
    if (c->vocab_padded < c->vocab_size || c->vocab_padded > PT_CFG_MAX_VOCAB)
        return pt_fail(PT_EINVAL, "%s: vocab_padded is %d; it must be at least vocab_size (%d) and at most %d", who,
                       c->vocab_padded, c->vocab_size, PT_CFG_MAX_VOCAB);
    if (c->max_seq_len < 1 || c->max_seq_len > PT_CFG_MAX_SEQ)
        return pt_fail(PT_EINVAL, "%s: max_seq_len is %d; it must be between 1 and %d", who, c->max_seq_len,
                       PT_CFG_MAX_SEQ);
    if (c->head_split < 0 || c->head_split > PT_CFG_MAX_HEAD_SPLIT)
        return pt_fail(PT_EINVAL, "%s: head_split is %d; it must be between 1 and %d", who, c->head_split,
                       PT_CFG_MAX_HEAD_SPLIT);
    if (pt_model_head_layers(c) > c->vocab_padded)
        return pt_fail(PT_EINVAL, "%s: head_split %d leaves an LM-head shard without vocabulary rows (%d rows of wte); "
                                  "use at most %d shards",
                       who, c->head_split, c->vocab_padded, c->vocab_padded);
    if (c->head_chunk < 0 || c->head_chunk > (1 << 24))
        return pt_fail(PT_EINVAL, "%s: head_chunk is %d rows; it must be between 0 (all rows at once) and %d", who,
                       c->head_chunk, 1 << 24);
    if (c->head_chunk > 0 && c->head_split > 1)
        return pt_fail(PT_EINVAL, "%s: head_chunk %d and head_split %d: an LM head split into vocabulary shards "
                                  "already keeps only its shard's logits; use one of them",
                       who, c->head_chunk, c->head_split);
    if (c->arch != PT_ARCH_GPT2 && c->arch != PT_ARCH_LLAMA)
        return pt_fail(PT_EINVAL, "%s: architecture %d is unknown; use gpt2 or llama", who, (int)c->arch);
    if (c->arch == PT_ARCH_GPT2) {
        if (c->n_kv_head || c->intermediate_size || c->rope_theta != 0.0 || c->rms_norm_eps != 0.0f ||
            c->rope_scaling_factor != 0.0)
            return pt_fail(PT_EINVAL, "%s: n_kv_head, intermediate_size, rope_theta, rms_norm_eps and rope_scaling are "
                                      "llama fields; set \"architecture\": \"llama\" or drop them",
                           who);
        return PT_OK;
    }
    const int kv = pt_model_kv_heads(c), hs = c->n_embd / c->n_head;
    if (kv < 1 || kv > c->n_head || c->n_head % kv != 0)
        return pt_fail(PT_EINVAL, "%s: n_head %d is not a multiple of n_kv_head %d; grouped-query attention shares each "
                                  "key/value head among n_head / n_kv_head query heads, so pick n_kv_head dividing %d",
                       who, c->n_head, kv, c->n_head);
    if (hs % 2 != 0)
        return pt_fail(PT_EINVAL, "%s: the head width n_embd / n_head = %d / %d = %d is odd; rotary embedding turns pairs "
                                  "of features, so choose n_head giving an even head width",
                       who, c->n_embd, c->n_head, hs);
    if (c->intermediate_size < 1 || c->intermediate_size > 16 * PT_CFG_MAX_EMBD)
        return pt_fail(PT_EINVAL, "%s: intermediate_size is %d; it must be between 1 and %d (Llama 3 uses about 3.5 x "
                                  "n_embd)",
                       who, c->intermediate_size, 16 * PT_CFG_MAX_EMBD);
    if (!(c->rms_norm_eps > 0.0f) || !(c->rms_norm_eps < 1.0f))
        return pt_fail(PT_EINVAL, "%s: rms_norm_eps is %g; it must be in (0, 1), typically 1e-5 or 1e-6", who,
                       (double)c->rms_norm_eps);
    if (!(c->rope_theta > 1.0) || !isfinite(c->rope_theta))
        return pt_fail(PT_EINVAL, "%s: rope_theta is %g; it must be a finite base above 1 (10000 Llama 2, 500000 "
                                  "Llama 3)",
                       who, c->rope_theta);
    if (c->rope_scaling_factor != 0.0) {
        if (!(c->rope_scaling_factor >= 1.0) || !isfinite(c->rope_scaling_factor) || !(c->rope_low_freq_factor > 0.0) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor) || !isfinite(c->rope_high_freq_factor) ||
            c->rope_original_max_pos < 1)
            return pt_fail(PT_EINVAL, "%s: rope_scaling needs factor >= 1, 0 < low_freq_factor < high_freq_factor and "
                                      "original_max_position_embeddings >= 1 (Llama 3.1: 8, 1, 4, 8192); got %g, %g, "
                                      "%g, %d",
                           who, c->rope_scaling_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                           c->rope_original_max_pos);
    }
    return PT_OK;
}

int pt_model_head_chunk_auto(const pt_model_config *cfg, int tp)
{
    const double row = (double)(cfg->vocab_padded > 0 ? cfg->vocab_padded : cfg->vocab_size) * sizeof(float);
    if (cfg->head_split > 1 || tp > 1)
        return 0;
    double rows = floor(PT_HEAD_CHUNK_AUTO_BYTES / row / 256.0) * 256.0;
    if (rows < PT_HEAD_CHUNK_MIN_ROWS)
        rows = PT_HEAD_CHUNK_MIN_ROWS;
    return rows < (1 << 24) ? (int)rows : 1 << 24;
}

pt_status pt_model_config_set_head_split(pt_model_config *cfg, int k)
{
    if (k > 0)
        cfg->head_split = k;
    return pt_model_config_validate(cfg);
}

void pt_model_layer_describe(const pt_model_config *cfg, int l, char *buf, size_t cap)
{
    const int K = pt_model_head_layers(cfg), k = l - (cfg->n_layer + 1);
    if (l == 0)
        snprintf(buf, cap, "the embedding");
    else if (l <= cfg->n_layer)
        snprintf(buf, cap, "block %d", l - 1);
    else if (K == 1)
        snprintf(buf, cap, "the final norm and LM head");
    else {
        int v0, v1;
        pt_model_head_shard_rows(cfg, k, &v0, &v1);
        snprintf(buf, cap, "LM head shard %d/%d (wte rows %d-%d%s)", k + 1, K, v0, v1 - 1,
                 k == 0 ? ", with the final norm" : k == K - 1 ? ", with the loss" : "");
    }
}

int64_t pt_model_config_n_params(const pt_model_config *c)
{
    int64_t C = c->n_embd;
    if (c->arch == PT_ARCH_LLAMA) {
        const int64_t kv = (int64_t)pt_model_kv_heads(c) * (C / c->n_head), H = c->intermediate_size;
        int64_t block = C * (C + 2 * kv) + C * C + 3 * C * H + 2 * C; /* qkv, o, gate/up/down, 2 norms */
        int64_t emb = (int64_t)c->vocab_size * C;
        return emb + (int64_t)c->n_layer * block + C + (pt_model_tied(c) ? 0 : emb);
    }
    int64_t block = 12 * C * C + 13 * C; /* qkv 3C*C+3C, proj C*C+C, fc 4C*C+4C, proj C*4C+C, 2 layernorms 4C */
    return (int64_t)c->vocab_size * C + (int64_t)c->max_seq_len * C + (int64_t)c->n_layer * block + 2 * C;
}

int pt__model_config_preset(const char *name, pt_model_config *out)
{
    for (int i = 0; i < CFG_N_PRESETS; i++) {
        const cfg_preset *p = &cfg_presets[i];
        if (strcmp(p->name, name) == 0) {
            memset(out, 0, sizeof(*out));
            snprintf(out->name, sizeof(out->name), "%s", p->name);
            out->n_layer = p->n_layer;
            out->n_head = p->n_head;
            out->n_embd = p->n_embd;
            out->vocab_size = p->vocab_size;
            out->vocab_padded = p->vocab_padded;
            out->max_seq_len = p->max_seq_len;
            if (p->llama) {
                out->arch = PT_ARCH_LLAMA;
                out->n_kv_head = p->n_kv_head;
                out->intermediate_size = p->intermediate_size;
                out->rms_norm_eps = p->eps;
                out->rope_theta = p->theta;
                out->tie_word_embeddings = p->tie;
                if (p->scale_factor > 0.0) {
                    out->rope_scaling_factor = p->scale_factor;
                    out->rope_low_freq_factor = 1.0;
                    out->rope_high_freq_factor = 4.0;
                    out->rope_original_max_pos = 8192;
                }
            }
            return 1;
        }
    }
    return 0;
}

/* Reads one integer field into an int, naming the file and field on error. */
static pt_status cfg_get(const cJSON *root, const char *path, const char *key, long long lo, long long hi, int *out)
{
    long long v = 0;
    PT_CHECK(pt_json_get_int(root, path, key, lo, hi, &v));
    *out = (int)v;
    return PT_OK;
}

/* The architecture and the llama fields of a config object (the keys after the common ones). */
static pt_status cfg_llama_from_json(const cJSON *obj, const char *what, pt_model_config *out)
{
    if (cJSON_HasObjectItem(obj, "architecture")) {
        const char *a = NULL;
        PT_CHECK(pt_json_get_string(obj, what, "architecture", &a));
        if (strcmp(a, "llama") == 0)
            out->arch = PT_ARCH_LLAMA;
        else if (strcmp(a, "gpt2") != 0)
            return pt_fail(PT_EINVAL, "%s: architecture \"%s\" is not one pipetrain builds; use \"gpt2\" or \"llama\"",
                           what, a);
    }
    static const char *const llama_keys[] = { "n_kv_head", "intermediate_size", "rms_norm_eps", "rope_theta",
                                              "tie_word_embeddings", "rope_scaling" };
    if (out->arch != PT_ARCH_LLAMA) {
        for (size_t i = 0; i < sizeof(llama_keys) / sizeof(llama_keys[0]); i++)
            if (cJSON_HasObjectItem(obj, llama_keys[i]))
                return pt_fail(PT_EINVAL, "%s: \"%s\" is a llama field; add \"architecture\": \"llama\" or drop it",
                               what, llama_keys[i]);
        return PT_OK;
    }
    out->n_kv_head = out->n_head;
    if (cJSON_HasObjectItem(obj, "n_kv_head"))
        PT_CHECK(cfg_get(obj, what, "n_kv_head", 1, PT_CFG_MAX_HEADS, &out->n_kv_head));
    PT_CHECK(cfg_get(obj, what, "intermediate_size", 1, 16 * PT_CFG_MAX_EMBD, &out->intermediate_size));
    double v = 1e-5;
    if (cJSON_HasObjectItem(obj, "rms_norm_eps"))
        PT_CHECK(pt_json_get_double(obj, what, "rms_norm_eps", &v));
    out->rms_norm_eps = (float)v;
    out->rope_theta = 10000.0;
    if (cJSON_HasObjectItem(obj, "rope_theta"))
        PT_CHECK(pt_json_get_double(obj, what, "rope_theta", &out->rope_theta));
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(obj, "tie_word_embeddings");
    if (tie) {
        if (!cJSON_IsBool(tie))
            return pt_fail(PT_EINVAL, "%s: \"tie_word_embeddings\" must be true or false", what);
        out->tie_word_embeddings = cJSON_IsTrue(tie);
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(obj, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        char path[160];
        snprintf(path, sizeof(path), "%s: rope_scaling", what);
        static const char *const rs_keys[] = { "factor", "low_freq_factor", "high_freq_factor",
                                               "original_max_position_embeddings", "rope_type", NULL };
        PT_CHECK(pt_json_check_keys(rs, path, rs_keys));
        if (cJSON_HasObjectItem(rs, "rope_type")) {
            const char *t = NULL;
            PT_CHECK(pt_json_get_string(rs, path, "rope_type", &t));
            if (strcmp(t, "llama3") != 0)
                return pt_fail(PT_EINVAL, "%s: rope_type \"%s\" is not supported; pipetrain implements Llama 3.1's "
                                          "\"llama3\" scaling only",
                               path, t);
        }
        PT_CHECK(pt_json_get_double(rs, path, "factor", &out->rope_scaling_factor));
        PT_CHECK(pt_json_get_double(rs, path, "low_freq_factor", &out->rope_low_freq_factor));
        PT_CHECK(pt_json_get_double(rs, path, "high_freq_factor", &out->rope_high_freq_factor));
        PT_CHECK(cfg_get(rs, path, "original_max_position_embeddings", 1, PT_CFG_MAX_SEQ, &out->rope_original_max_pos));
    }
    return PT_OK;
}

pt_status pt_model_config_from_json(const struct cJSON *obj, const char *what, pt_model_config *out)
{
    memset(out, 0, sizeof(*out));
    static const char *const allowed[] = { "name",        "architecture", "n_layer",       "n_head",
                                           "n_embd",      "vocab_size",   "vocab_padded",  "max_seq_len",
                                           "head_split",  "n_kv_head",    "intermediate_size", "rms_norm_eps",
                                           "rope_theta",  "tie_word_embeddings", "rope_scaling", NULL };
    if (!cJSON_IsObject(obj))
        return pt_fail(PT_EINVAL, "%s: a model config must be a JSON object with n_layer, n_head, n_embd, vocab_size "
                                  "and max_seq_len",
                       what);
    PT_CHECK(pt_json_check_keys(obj, what, allowed));
    PT_CHECK(cfg_get(obj, what, "n_layer", 1, PT_CFG_MAX_LAYERS, &out->n_layer));
    PT_CHECK(cfg_get(obj, what, "n_head", 1, PT_CFG_MAX_HEADS, &out->n_head));
    PT_CHECK(cfg_get(obj, what, "n_embd", 1, PT_CFG_MAX_EMBD, &out->n_embd));
    PT_CHECK(cfg_get(obj, what, "vocab_size", 2, PT_CFG_MAX_VOCAB, &out->vocab_size));
    PT_CHECK(cfg_get(obj, what, "max_seq_len", 1, PT_CFG_MAX_SEQ, &out->max_seq_len));
    out->vocab_padded = out->vocab_size;
    if (cJSON_HasObjectItem(obj, "vocab_padded"))
        PT_CHECK(cfg_get(obj, what, "vocab_padded", 2, PT_CFG_MAX_VOCAB, &out->vocab_padded));
    if (cJSON_HasObjectItem(obj, "head_split"))
        PT_CHECK(cfg_get(obj, what, "head_split", 1, PT_CFG_MAX_HEAD_SPLIT, &out->head_split));
    if (cJSON_HasObjectItem(obj, "name")) {
        const char *name = NULL;
        PT_CHECK(pt_json_get_string(obj, what, "name", &name));
        if (strlen(name) >= sizeof(out->name))
            return pt_fail(PT_EINVAL, "%s: \"name\" is longer than %zu characters; shorten it", what,
                           sizeof(out->name) - 1);
        snprintf(out->name, sizeof(out->name), "%s", name);
    }
    PT_CHECK(cfg_llama_from_json(obj, what, out));
    pt_status st = pt_model_config_validate(out);
    if (st != PT_OK && !out->name[0])
        st = pt_fail_wrap(st, "%s", what);
    return st;
}

struct cJSON *pt_model_config_to_json(const pt_model_config *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int ok = cJSON_AddStringToObject(o, "name", c->name) && cJSON_AddNumberToObject(o, "n_layer", c->n_layer) &&
             cJSON_AddNumberToObject(o, "n_head", c->n_head) && cJSON_AddNumberToObject(o, "n_embd", c->n_embd) &&
             cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size) &&
             cJSON_AddNumberToObject(o, "vocab_padded", c->vocab_padded) &&
             cJSON_AddNumberToObject(o, "max_seq_len", c->max_seq_len) &&
             (c->head_split <= 1 || cJSON_AddNumberToObject(o, "head_split", c->head_split));
    if (ok && c->arch == PT_ARCH_LLAMA) {
        ok = cJSON_AddStringToObject(o, "architecture", "llama") &&
             cJSON_AddNumberToObject(o, "n_kv_head", pt_model_kv_heads(c)) &&
             cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size) &&
             cJSON_AddNumberToObject(o, "rms_norm_eps", (double)c->rms_norm_eps) &&
             cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta) &&
             cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
        if (ok && c->rope_scaling_factor != 0.0) {
            cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
            ok = rs && cJSON_AddNumberToObject(rs, "factor", c->rope_scaling_factor) &&
                 cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq_factor) &&
                 cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq_factor) &&
                 cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_original_max_pos);
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

const char *pt_precision_name(pt_precision p) { return p == PT_PRECISION_BF16 ? "bf16" : "fp32"; }

pt_status pt_precision_parse(const char *s, pt_precision *out)
{
    if (s && strcmp(s, "fp32") == 0)
        *out = PT_PRECISION_FP32;
    else if (s && strcmp(s, "bf16") == 0)
        *out = PT_PRECISION_BF16;
    else
        return pt_fail(PT_EINVAL, "precision '%s' is not one of fp32, bf16", s ? s : "(none)");
    return PT_OK;
}
