/* Hugging Face Llama-family checkpoints in and out: config.json <-> pt_model_config, the
 * LlamaForCausalLM tensor names (q/k/v_proj stacked into attn.qkv, gate/up_proj into mlp.gate_up),
 * one model.safetensors or a sharded model.safetensors.index.json, F32/F16/BF16 on disk. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf_internal.h"
#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/model.h"
#include "pipetrain/safetensors.h"

#define HF_PATH 4096
#define HF_SINGLE "model.safetensors"
#define HF_INDEX "model.safetensors.index.json"

/* ---- where a Hugging Face checkpoint's files are ---- */

typedef struct hf_paths {
    char dir[HF_PATH];     /* the model directory */
    char config[HF_PATH];  /* dir/config.json, or "" when there is none */
    char weights[HF_PATH]; /* model.safetensors, the index, or the file given; "" when the directory has none */
    int index;             /* weights is a model.safetensors.index.json */
} hf_paths;

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static pt_status join(char *dst, const char *dir, const char *name)
{
    if ((size_t)snprintf(dst, HF_PATH, "%s/%s", dir, name) >= HF_PATH)
        return pt_fail(PT_EINVAL, "path %s/%s is too long", dir, name);
    return PT_OK;
}

static void dir_of(const char *path, char *dir)
{
    snprintf(dir, HF_PATH, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, HF_PATH, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
}

/* 1 when the JSON file at path is a Hugging Face config (has model_type or architectures): a
 * config.json beside a single file may be something else's (a training run's description). */
static int is_hf_config(const char *path)
{
    cJSON *root = NULL;
    if (pt_json_read_file(path, &root) != PT_OK)
        return 0;
    int hf = cJSON_HasObjectItem(root, "model_type") || cJSON_HasObjectItem(root, "architectures");
    cJSON_Delete(root);
    return hf;
}

/* A directory (config.json + model.safetensors or the index), its config.json, an index file, or
 * one .safetensors file (with the config.json beside it, when there is one and it is a Hugging
 * Face config). */
static pt_status hf_resolve(const char *path, hf_paths *p)
{
    memset(p, 0, sizeof *p);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return pt_fail(PT_EIO, "%s: %s; give a Hugging Face model directory (config.json + model.safetensors) or a "
                               ".safetensors file",
                       path, strerror(errno));
    int dir = S_ISDIR(sb.st_mode);
    if (dir) {
        if (strlen(path) >= HF_PATH)
            return pt_fail(PT_EINVAL, "path %s is too long", path);
        snprintf(p->dir, HF_PATH, "%s", path);
    } else {
        dir_of(path, p->dir);
    }
    char cfg[HF_PATH];
    PT_CHECK(join(cfg, p->dir, "config.json"));
    if (is_file(cfg))
        snprintf(p->config, HF_PATH, "%s", cfg);
    if (!dir && ends_with(path, ".index.json")) {
        snprintf(p->weights, HF_PATH, "%s", path);
        p->index = 1;
        return PT_OK;
    }
    if (!dir && !ends_with(path, ".json")) {
        snprintf(p->weights, HF_PATH, "%s", path);
        if (p->config[0] && !is_hf_config(p->config))
            p->config[0] = 0;
        return PT_OK;
    }
    if (!dir) /* config.json itself: the weights are beside it */
        snprintf(p->config, HF_PATH, "%s", path);
    char w[HF_PATH];
    PT_CHECK(join(w, p->dir, HF_SINGLE));
    if (is_file(w)) {
        snprintf(p->weights, HF_PATH, "%s", w);
        return PT_OK;
    }
    PT_CHECK(join(w, p->dir, HF_INDEX));
    if (is_file(w)) {
        snprintf(p->weights, HF_PATH, "%s", w);
        p->index = 1;
    }
    return PT_OK;
}

/* ---- config.json -> pt_model_config ---- */

static int json_true(const cJSON *o, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key)); }

/* A field that is present with a value other than null, false or 0. */
static int json_set(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
        return 0;
    if (cJSON_IsNumber(v))
        return v->valuedouble != 0.0;
    return 1;
}

static pt_status get_int(const cJSON *o, const char *what, const char *key, long long lo, long long hi, int *out)
{
    long long v = 0;
    PT_CHECK(pt_json_get_int(o, what, key, lo, hi, &v));
    *out = (int)v;
    return PT_OK;
}

typedef struct hf_arch {
    const char *cls, *type;
    int max_pos; /* the transformers default of max_position_embeddings */
} hf_arch;

static const hf_arch hf_arches[] = {
    { "LlamaForCausalLM", "llama", 2048 },
    { "MistralForCausalLM", "mistral", 4096 * 32 },
    { "Qwen2ForCausalLM", "qwen2", 32768 },
    { "OlmoForCausalLM", "olmo", 2048 },
};

pt_status pt_model_config_from_hf_json(const struct cJSON *obj, const char *what, pt_model_config *out)
{
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(obj))
        return pt_fail(PT_EINVAL, "%s: a Hugging Face config must be a JSON object", what);
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(obj, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(obj, "model_type");
    const char *cls = cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0))
                          ? cJSON_GetArrayItem(archs, 0)->valuestring
                          : NULL;
    const char *type = cJSON_IsString(mt) ? mt->valuestring : NULL;
    const hf_arch *a = NULL;
    for (size_t i = 0; i < sizeof hf_arches / sizeof hf_arches[0] && !a; i++)
        if ((cls && strcmp(cls, hf_arches[i].cls) == 0) || (!cls && type && strcmp(type, hf_arches[i].type) == 0))
            a = &hf_arches[i];
    if (!a)
        return pt_fail(PT_EINVAL, "%s: %s \"%s\" is not a model pipetrain loads; it reads LlamaForCausalLM (and "
                                  "MistralForCausalLM / Qwen2ForCausalLM without their extra features)",
                       what, cls ? "architectures" : "model_type", cls ? cls : type ? type : "(none)");
    /* the features pipetrain's llama blocks do not compute, each refused by its field */
    if (strcmp(a->type, "olmo") == 0)
        return pt_fail(PT_EINVAL, "%s: architectures \"%s\" normalises with a LayerNorm that has no weights "
                                  "(OlmoLayerNorm), not RMSNorm, and clips q/k/v (clip_qkv); pipetrain's llama blocks "
                                  "cannot compute it",
                       what, a->cls);
    static const char *const moe[] = { "num_local_experts", "num_experts", "n_routed_experts", "moe_intermediate_size" };
    for (size_t i = 0; i < sizeof moe / sizeof moe[0]; i++)
        if (json_set(obj, moe[i]))
            return pt_fail(PT_EINVAL, "%s: \"%s\" makes this a mixture of experts, which pipetrain does not build; "
                                      "only dense models load",
                           what, moe[i]);
    if (json_true(obj, "use_sliding_window"))
        return pt_fail(PT_EINVAL, "%s: \"use_sliding_window\" is true; pipetrain's attention is full causal attention, "
                                  "so sliding-window models do not load",
                       what);
    /* Qwen2 slides only with use_sliding_window; Mistral whenever sliding_window is set */
    if (strcmp(a->type, "qwen2") != 0 && json_set(obj, "sliding_window"))
        return pt_fail(PT_EINVAL, "%s: \"sliding_window\" is set (%g); pipetrain's attention is full causal attention; "
                                  "only configs with \"sliding_window\": null load",
                       what, cJSON_GetObjectItemCaseSensitive(obj, "sliding_window")->valuedouble);
    static const char *const bias[] = { "attention_bias", "mlp_bias" };
    for (size_t i = 0; i < 2; i++)
        if (json_true(obj, bias[i]))
            return pt_fail(PT_EINVAL, "%s: \"%s\" is true; pipetrain's llama blocks have no biases", what, bias[i]);
    static const char *const qkn[] = { "use_qk_norm", "qk_layernorm", "use_qk_layernorm" };
    for (size_t i = 0; i < sizeof qkn / sizeof qkn[0]; i++)
        if (json_true(obj, qkn[i]))
            return pt_fail(PT_EINVAL, "%s: \"%s\" is true; pipetrain's llama blocks do not normalise q and k", what,
                           qkn[i]);
    if (json_set(obj, "clip_qkv"))
        return pt_fail(PT_EINVAL, "%s: \"clip_qkv\" is set; pipetrain's llama blocks do not clip q/k/v", what);
    const char *act_key = cJSON_HasObjectItem(obj, "hidden_act") ? "hidden_act" : "hidden_activation";
    if (cJSON_HasObjectItem(obj, act_key)) {
        const char *act = NULL;
        PT_CHECK(pt_json_get_string(obj, what, act_key, &act));
        if (strcmp(act, "silu") != 0)
            return pt_fail(PT_EINVAL, "%s: \"%s\" is \"%s\"; pipetrain's SwiGLU MLP uses \"silu\"", what, act_key, act);
    }
    const cJSON *prf = cJSON_GetObjectItemCaseSensitive(obj, "partial_rotary_factor");
    if (prf && !(cJSON_IsNumber(prf) && prf->valuedouble == 1.0))
        return pt_fail(PT_EINVAL, "%s: \"partial_rotary_factor\" is not 1; pipetrain rotates whole heads", what);

    /* the shape */
    const int max_i = 1 << 24;
    PT_CHECK(get_int(obj, what, "num_hidden_layers", 1, max_i, &out->n_layer));
    PT_CHECK(get_int(obj, what, "num_attention_heads", 1, max_i, &out->n_head));
    PT_CHECK(get_int(obj, what, "hidden_size", 1, max_i, &out->n_embd));
    PT_CHECK(get_int(obj, what, "intermediate_size", 1, max_i, &out->intermediate_size));
    PT_CHECK(get_int(obj, what, "vocab_size", 2, max_i, &out->vocab_size));
    out->n_kv_head = out->n_head;
    if (json_set(obj, "num_key_value_heads"))
        PT_CHECK(get_int(obj, what, "num_key_value_heads", 1, max_i, &out->n_kv_head));
    out->max_seq_len = a->max_pos;
    if (json_set(obj, "max_position_embeddings"))
        PT_CHECK(get_int(obj, what, "max_position_embeddings", 1, max_i, &out->max_seq_len));
    if (json_set(obj, "head_dim")) {
        int hd = 0;
        PT_CHECK(get_int(obj, what, "head_dim", 1, max_i, &hd));
        if ((long long)hd * out->n_head != out->n_embd)
            return pt_fail(PT_EINVAL, "%s: \"head_dim\" is %d but hidden_size / num_attention_heads is %d / %d; "
                                      "pipetrain's heads are hidden_size / num_attention_heads wide",
                           what, hd, out->n_embd, out->n_head);
    }
    out->vocab_padded = out->vocab_size;
    if (cJSON_HasObjectItem(obj, "pipetrain_vocab_size")) { /* pipetrain's export of a padded vocabulary */
        PT_CHECK(get_int(obj, what, "pipetrain_vocab_size", 2, out->vocab_padded, &out->vocab_size));
    }
    double v = 1e-6; /* transformers' LlamaConfig default */
    if (json_set(obj, "rms_norm_eps"))
        PT_CHECK(pt_json_get_double(obj, what, "rms_norm_eps", &v));
    out->rms_norm_eps = (float)v;
    out->rope_theta = 10000.0;
    if (json_set(obj, "rope_theta"))
        PT_CHECK(pt_json_get_double(obj, what, "rope_theta", &out->rope_theta));
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(obj, "tie_word_embeddings");
    if (tie && !cJSON_IsNull(tie)) {
        if (!cJSON_IsBool(tie))
            return pt_fail(PT_EINVAL, "%s: \"tie_word_embeddings\" must be true or false", what);
        out->tie_word_embeddings = cJSON_IsTrue(tie);
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(obj, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        char path[600];
        snprintf(path, sizeof path, "%s: rope_scaling", what);
        if (!cJSON_IsObject(rs))
            return pt_fail(PT_EINVAL, "%s must be null or an object", path);
        const char *key = cJSON_HasObjectItem(rs, "rope_type") ? "rope_type" : "type";
        const char *t = "default";
        if (cJSON_HasObjectItem(rs, key))
            PT_CHECK(pt_json_get_string(rs, path, key, &t));
        if (strcmp(t, "llama3") == 0) {
            PT_CHECK(pt_json_get_double(rs, path, "factor", &out->rope_scaling_factor));
            PT_CHECK(pt_json_get_double(rs, path, "low_freq_factor", &out->rope_low_freq_factor));
            PT_CHECK(pt_json_get_double(rs, path, "high_freq_factor", &out->rope_high_freq_factor));
            PT_CHECK(get_int(rs, path, "original_max_position_embeddings", 1, max_i, &out->rope_original_max_pos));
        } else if (strcmp(t, "default") != 0) {
            return pt_fail(PT_EINVAL, "%s: %s \"%s\" is not supported; pipetrain implements the default rotary "
                                      "embedding and Llama 3.1's \"llama3\" scaling",
                           path, key, t);
        }
    }
    out->arch = PT_ARCH_LLAMA;
    pt_status st = pt_model_config_validate(out);
    if (st != PT_OK)
        st = pt_fail_wrap(st, "%s", what);
    return st;
}

/* Names the config after its directory ("Llama-3.2-1B"). */
static void name_from_dir(pt_model_config *c, const char *dir)
{
    char d[HF_PATH];
    snprintf(d, sizeof d, "%s", dir);
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/')
        d[--n] = 0;
    const char *base = strrchr(d, '/');
    base = base ? base + 1 : d;
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || !base[0])
        base = "hf-llama";
    snprintf(c->name, sizeof c->name, "%s", base);
}

pt_status pt_model_config_from_hf(const char *path, pt_model_config *out)
{
    hf_paths p;
    PT_CHECK(hf_resolve(path, &p));
    if (p.config[0]) {
        cJSON *root = NULL;
        PT_CHECK(pt_json_read_file(p.config, &root));
        pt_status st = pt_model_config_from_hf_json(root, p.config, out);
        cJSON_Delete(root);
        if (st == PT_OK)
            name_from_dir(out, p.dir);
        return st;
    }
    if (p.weights[0] && !p.index) { /* a single file pipetrain exported: the config in its metadata */
        pt_safetensors *f;
        PT_CHECK(pt_safetensors_open(p.weights, &f));
        const char *js = pt_safetensors_metadata(f, "pipetrain_config");
        pt_status st;
        if (js) {
            cJSON *root = NULL;
            st = pt_json_parse(js, strlen(js), p.weights, &root);
            if (st == PT_OK)
                st = pt_model_config_from_json(root, p.weights, out);
            cJSON_Delete(root);
        } else {
            st = pt_fail(PT_EINVAL, "%s has no config.json beside it and no config in its metadata; put the model's "
                                    "config.json in %s or pass --model NAME|FILE",
                         p.weights, p.dir);
        }
        pt_safetensors_close(f);
        return st;
    }
    return pt_fail(PT_EINVAL, "%s holds no config.json; a Hugging Face model directory has config.json and "
                              "model.safetensors (or model.safetensors.index.json)",
                   p.dir);
}

/* ---- the tensors: a single file or an index of shards ---- */

typedef struct hf_shard {
    char *name; /* file name inside the directory (from the index) */
    pt_safetensors *f;
} hf_shard;

typedef struct hf_src {
    hf_paths paths;
    pt_safetensors *single;
    cJSON *index;     /* the index file */
    const cJSON *map; /* its weight_map */
    hf_shard *shards;
    int n_shards;
} hf_src;

static void hf_src_close(hf_src *s)
{
    pt_safetensors_close(s->single);
    for (int i = 0; i < s->n_shards; i++) {
        pt_safetensors_close(s->shards[i].f);
        free(s->shards[i].name);
    }
    free(s->shards);
    cJSON_Delete(s->index);
    memset(s, 0, sizeof *s);
}

static pt_status hf_src_open(const char *path, hf_src *s)
{
    memset(s, 0, sizeof *s);
    PT_CHECK(hf_resolve(path, &s->paths));
    if (!s->paths.weights[0])
        return pt_fail(PT_EINVAL, "%s holds neither %s nor %s; a Hugging Face model directory has its weights in one "
                                  "of them",
                       s->paths.dir, HF_SINGLE, HF_INDEX);
    if (!s->paths.index)
        return pt_safetensors_open(s->paths.weights, &s->single);
    PT_CHECK(pt_json_read_file(s->paths.weights, &s->index));
    s->map = cJSON_GetObjectItemCaseSensitive(s->index, "weight_map");
    if (!cJSON_IsObject(s->map)) {
        hf_src_close(s);
        return pt_fail(PT_EFORMAT, "%s has no \"weight_map\" object; a safetensors index maps each tensor to its file",
                       path);
    }
    int n = cJSON_GetArraySize(s->map);
    s->shards = calloc(n > 0 ? (size_t)n : 1, sizeof *s->shards);
    if (!s->shards) {
        hf_src_close(s);
        return pt_fail(PT_ENOMEM, "out of memory reading %s", path);
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, s->map)
    {
        const char *fn = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!fn || !fn[0] || strchr(fn, '/') || strcmp(fn, "..") == 0 || strcmp(fn, ".") == 0) {
            pt_status st = pt_fail(PT_EFORMAT, "%s: weight_map[\"%s\"] must be a file name in the same directory",
                                   s->paths.weights, e->string ? e->string : "");
            hf_src_close(s);
            return st;
        }
        int known = 0;
        for (int i = 0; i < s->n_shards && !known; i++)
            known = strcmp(s->shards[i].name, fn) == 0;
        if (!known) {
            s->shards[s->n_shards].name = strdup(fn);
            if (!s->shards[s->n_shards++].name) {
                hf_src_close(s);
                return pt_fail(PT_ENOMEM, "out of memory reading %s", path);
            }
        }
    }
    return PT_OK;
}

/* Finds a tensor: *t NULL when the checkpoint has none of that name; *f and *file say where it is.
 * Index shards are opened on first use, so a pipeline stage opens only the files it reads. */
static pt_status hf_src_find_exact(hf_src *s, const char *name, pt_safetensors **f, const pt_safetensors_tensor **t,
                                   const char **file)
{
    *t = NULL;
    *f = NULL;
    *file = s->paths.weights;
    if (s->single) {
        *f = s->single;
        *t = pt_safetensors_find(s->single, name);
        return PT_OK;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(s->map, name);
    if (!e)
        return PT_OK;
    hf_shard *sh = NULL;
    for (int i = 0; i < s->n_shards && !sh; i++)
        if (strcmp(s->shards[i].name, e->valuestring) == 0)
            sh = &s->shards[i];
    if (!sh->f) {
        char p[HF_PATH];
        PT_CHECK(join(p, s->paths.dir, sh->name));
        PT_CHECK(pt_safetensors_open(p, &sh->f));
    }
    *f = sh->f;
    *file = sh->name;
    *t = pt_safetensors_find(sh->f, name);
    if (!*t)
        return pt_fail(PT_EFORMAT, "%s says %s holds tensor \"%s\", but %s/%s has no such tensor", s->paths.weights,
                       sh->name, name, s->paths.dir, sh->name);
    return PT_OK;
}

/* As hf_src_find_exact, also under the name without "model." (a bare LlamaModel's checkpoint:
 * embed_tokens.weight, layers.0...., norm.weight). */
static pt_status hf_src_find(hf_src *s, const char *name, pt_safetensors **f, const pt_safetensors_tensor **t,
                             const char **file)
{
    PT_CHECK(hf_src_find_exact(s, name, f, t, file));
    if (!*t && strncmp(name, "model.", 6) == 0) {
        const char *first = *file;
        PT_CHECK(hf_src_find_exact(s, name + 6, f, t, file));
        if (!*t)
            *file = first;
    }
    return PT_OK;
}

/* ---- the name map ---- */

/* One Hugging Face tensor: rows [row0, row0 + rows) of a pipetrain tensor (cols 0: a vector). */
typedef struct hf_piece {
    char name[128];
    int row0, rows, cols;
} hf_piece;

static void piece(hf_piece *q, int row0, int rows, int cols, const char *fmt, int block)
{
    snprintf(q->name, sizeof q->name, fmt, block);
    q->row0 = row0;
    q->rows = rows;
    q->cols = cols;
}

/* The Hugging Face tensors pipetrain tensor `name` is made of (1 to 3 pieces, stacked by rows). */
static pt_status llama_pieces(const pt_model_config *c, const char *name, hf_piece *q, int *n)
{
    const int C = c->n_embd, hs = C / c->n_head, kv = pt_model_kv_heads(c) * hs, H = c->intermediate_size;
    const int V = c->vocab_padded;
    int b = -1, used = 0;
    const char *rest = "";
    if (sscanf(name, "blocks.%d.%n", &b, &used) == 1 && used > 0 && b >= 0)
        rest = name + used;
    *n = 1;
    if (strcmp(name, "wte.weight") == 0)
        piece(&q[0], 0, V, C, "model.embed_tokens.weight", 0);
    else if (strcmp(name, "lnf.weight") == 0)
        piece(&q[0], 0, C, 0, "model.norm.weight", 0);
    else if (strcmp(name, "lm_head.weight") == 0)
        piece(&q[0], 0, V, C, "lm_head.weight", 0);
    else if (strcmp(rest, "ln1.weight") == 0)
        piece(&q[0], 0, C, 0, "model.layers.%d.input_layernorm.weight", b);
    else if (strcmp(rest, "ln2.weight") == 0)
        piece(&q[0], 0, C, 0, "model.layers.%d.post_attention_layernorm.weight", b);
    else if (strcmp(rest, "attn.qkv.weight") == 0) {
        *n = 3;
        piece(&q[0], 0, C, C, "model.layers.%d.self_attn.q_proj.weight", b);
        piece(&q[1], C, kv, C, "model.layers.%d.self_attn.k_proj.weight", b);
        piece(&q[2], C + kv, kv, C, "model.layers.%d.self_attn.v_proj.weight", b);
    } else if (strcmp(rest, "attn.proj.weight") == 0)
        piece(&q[0], 0, C, C, "model.layers.%d.self_attn.o_proj.weight", b);
    else if (strcmp(rest, "mlp.gate_up.weight") == 0) {
        *n = 2;
        piece(&q[0], 0, H, C, "model.layers.%d.mlp.gate_proj.weight", b);
        piece(&q[1], H, H, C, "model.layers.%d.mlp.up_proj.weight", b);
    } else if (strcmp(rest, "mlp.down.weight") == 0)
        piece(&q[0], 0, C, H, "model.layers.%d.mlp.down_proj.weight", b);
    else
        return pt_fail(PT_EINVAL, "\"%s\" is not a llama parameter name", name);
    return PT_OK;
}

/* ---- loading ---- */

static void shape_str(const pt_safetensors_tensor *t, char *buf, size_t cap)
{
    buf[0] = 0;
    for (int d = 0; d < t->ndim; d++) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    }
}

/* The model's config against the checkpoint's config.json: the fields tensor shapes cannot tell. */
static pt_status check_against_config(const pt_model_config *c, const char *config_path)
{
    cJSON *root = NULL;
    PT_CHECK(pt_json_read_file(config_path, &root));
    pt_model_config f;
    pt_status st = pt_model_config_from_hf_json(root, config_path, &f);
    cJSON_Delete(root);
    if (st != PT_OK)
        return st;
    const char *field = NULL;
    char ours[64], theirs[64];
    if (c->n_head != f.n_head) {
        field = "num_attention_heads";
        snprintf(ours, sizeof ours, "%d", c->n_head);
        snprintf(theirs, sizeof theirs, "%d", f.n_head);
    } else if (pt_model_kv_heads(c) != pt_model_kv_heads(&f)) {
        field = "num_key_value_heads";
        snprintf(ours, sizeof ours, "%d", pt_model_kv_heads(c));
        snprintf(theirs, sizeof theirs, "%d", pt_model_kv_heads(&f));
    } else if (c->rope_theta != f.rope_theta) {
        field = "rope_theta";
        snprintf(ours, sizeof ours, "%g", c->rope_theta);
        snprintf(theirs, sizeof theirs, "%g", f.rope_theta);
    } else if (c->rms_norm_eps != f.rms_norm_eps) {
        field = "rms_norm_eps";
        snprintf(ours, sizeof ours, "%g", (double)c->rms_norm_eps);
        snprintf(theirs, sizeof theirs, "%g", (double)f.rms_norm_eps);
    } else if (c->rope_scaling_factor != f.rope_scaling_factor || c->rope_low_freq_factor != f.rope_low_freq_factor ||
               c->rope_high_freq_factor != f.rope_high_freq_factor ||
               c->rope_original_max_pos != f.rope_original_max_pos) {
        field = "rope_scaling";
        snprintf(ours, sizeof ours, "factor %g", c->rope_scaling_factor);
        snprintf(theirs, sizeof theirs, "factor %g", f.rope_scaling_factor);
    } else if (pt_model_tied(c) != pt_model_tied(&f)) {
        field = "tie_word_embeddings";
        snprintf(ours, sizeof ours, "%s", pt_model_tied(c) ? "true" : "false");
        snprintf(theirs, sizeof theirs, "%s", pt_model_tied(&f) ? "true" : "false");
    }
    if (field)
        return pt_fail(PT_EINVAL, "%s: %s is %s but the model config (%s) has %s; load it with the checkpoint's own "
                                  "config (--model %s, or no --model)",
                       config_path, field, theirs, c->name[0] ? c->name : "given", ours, config_path);
    return PT_OK;
}

/* Tensors of block b that mean a feature the llama blocks do not compute. */
static pt_status check_block_extras(hf_src *s, int b)
{
    static const struct {
        const char *fmt, *what;
    } extras[] = {
        { "model.layers.%d.self_attn.q_proj.bias", "attention biases (attention_bias)" },
        { "model.layers.%d.self_attn.k_proj.bias", "attention biases (attention_bias)" },
        { "model.layers.%d.self_attn.v_proj.bias", "attention biases (attention_bias)" },
        { "model.layers.%d.self_attn.o_proj.bias", "attention biases (attention_bias)" },
        { "model.layers.%d.mlp.gate_proj.bias", "MLP biases (mlp_bias)" },
        { "model.layers.%d.mlp.down_proj.bias", "MLP biases (mlp_bias)" },
        { "model.layers.%d.self_attn.q_norm.weight", "q/k normalisation (qk-norm)" },
        { "model.layers.%d.self_attn.k_norm.weight", "q/k normalisation (qk-norm)" },
    };
    for (size_t i = 0; i < sizeof extras / sizeof extras[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, extras[i].fmt, b);
        pt_safetensors *f;
        const pt_safetensors_tensor *t;
        const char *file;
        PT_CHECK(hf_src_find(s, name, &f, &t, &file));
        if (t)
            return pt_fail(PT_EINVAL, "%s: tensor \"%s\" means %s, which pipetrain's llama blocks do not have; this "
                                      "checkpoint cannot be loaded",
                           file, name, extras[i].what);
    }
    return PT_OK;
}

pt_status pt_model_load_hf_llama(pt_model *m, const char *path)
{
    const pt_model_config *cfg = pt_model_config_of(m);
    if (cfg->arch != PT_ARCH_LLAMA)
        return pt_fail(PT_EINVAL, "%s: the model (%s) is not a llama model", path, cfg->name);
    PT_CHECK(pt_hf_refuse_tp(m, path, "load"));
    const pt_backend *be = pt_model_backend(m);
    pt_stream *stream = pt_model_stream(m);
    hf_src s;
    PT_CHECK(hf_src_open(path, &s));
    pt_status st = PT_OK;
    size_t cap = pt_model_max_tensor_numel(m);
    float *host = malloc(cap * sizeof(float));
    if (!host) {
        st = pt_fail(PT_ENOMEM, "out of memory loading %s (%zu floats)", path, cap);
        goto done;
    }
    if (s.paths.config[0])
        PT_TRY(check_against_config(cfg, s.paths.config), done);
    int checked_block = -1;
    for (int i = 0; i < pt_model_n_tensors(m); i++) {
        const pt_param *p = pt_model_tensor(m, i);
        hf_piece q[3];
        int n = 0;
        PT_TRY(llama_pieces(cfg, p->name, q, &n), done);
        if (p->layer >= 1 && p->layer <= cfg->n_layer && p->layer != checked_block) {
            PT_TRY(check_block_extras(&s, p->layer - 1), done);
            checked_block = p->layer;
        }
        for (int k = 0; k < n; k++) {
            pt_safetensors *f;
            const pt_safetensors_tensor *t;
            const char *file;
            PT_TRY(hf_src_find(&s, q[k].name, &f, &t, &file), done);
            char want[64];
            if (q[k].cols)
                snprintf(want, sizeof want, "%d,%d", q[k].rows, q[k].cols);
            else
                snprintf(want, sizeof want, "%d", q[k].rows);
            if (!t) {
                if (strcmp(p->name, "lm_head.weight") == 0)
                    st = pt_fail(PT_EFORMAT, "%s: tensor \"lm_head.weight\" [%s] is missing: the checkpoint ties its "
                                             "LM head to the embedding; load it with \"tie_word_embeddings\": true",
                                 file, want);
                else
                    st = pt_fail(PT_EFORMAT, "%s: tensor \"%s\" [%s] (our %s) is missing; the checkpoint must hold a "
                                             "LlamaForCausalLM with this config's %d layers",
                                 file, q[k].name, want, p->name, cfg->n_layer);
                goto done;
            }
            int ok = q[k].cols ? t->ndim == 2 && t->shape[0] == q[k].rows && t->shape[1] == q[k].cols
                               : t->ndim == 1 && t->shape[0] == q[k].rows;
            if (!ok) {
                char got[96];
                shape_str(t, got, sizeof got);
                if (q[k].rows == cfg->vocab_padded && cfg->vocab_padded != cfg->vocab_size && t->ndim == 2 &&
                    t->shape[0] == cfg->vocab_size && t->shape[1] == q[k].cols)
                    st = pt_fail(PT_EFORMAT, "%s: tensor \"%s\" has shape [%s] (vocab_size rows) but the model needs "
                                             "[%s]: this config pads the vocabulary to %d rows, whose logits would join "
                                             "the softmax untrained; load it with \"vocab_padded\": %d (or the "
                                             "checkpoint's own config)",
                                 file, q[k].name, got, want, cfg->vocab_padded, cfg->vocab_size);
                else
                    st = pt_fail(PT_EFORMAT, "%s: tensor \"%s\" has shape [%s] but the model needs [%s] (our %s); the "
                                             "checkpoint is for another config",
                                 file, q[k].name, got, want, p->name);
                goto done;
            }
            size_t off = (size_t)q[k].row0 * (size_t)(q[k].cols ? q[k].cols : 1);
            PT_TRY(pt_safetensors_read_f32(f, t, host + off, cap - off), done);
        }
        PT_TRY(be->memcpy_h2d(stream, pt_model_params(m) + p->offset, host, p->numel * sizeof(float)), done);
        PT_TRY(be->stream_sync(stream), done); /* the host buffer is reused for the next tensor */
    }
done:
    free(host);
    hf_src_close(&s);
    return st;
}

/* ---- export ---- */

/* The shortest decimal that reads back as the same float (1e-05, not 9.99999974737875e-06). */
static double short_float(float f)
{
    char buf[64];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return strtod(buf, NULL);
}

cJSON *pt_model_config_to_hf_json(const pt_model_config *c, int bf16)
{
    if (c->arch != PT_ARCH_LLAMA)
        return NULL;
    cJSON *o = cJSON_CreateObject(), *archs = cJSON_CreateStringArray((const char *[]){ "LlamaForCausalLM" }, 1);
    if (!o || !archs) {
        cJSON_Delete(o);
        cJSON_Delete(archs);
        return NULL;
    }
    cJSON_AddItemToObject(o, "architectures", archs);
    int ok = cJSON_AddStringToObject(o, "model_type", "llama") &&
             cJSON_AddNumberToObject(o, "hidden_size", c->n_embd) &&
             cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size) &&
             cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layer) &&
             cJSON_AddNumberToObject(o, "num_attention_heads", c->n_head) &&
             cJSON_AddNumberToObject(o, "num_key_value_heads", pt_model_kv_heads(c)) &&
             cJSON_AddNumberToObject(o, "head_dim", c->n_embd / c->n_head) &&
             cJSON_AddNumberToObject(o, "vocab_size", c->vocab_padded) &&
             (c->vocab_padded == c->vocab_size || cJSON_AddNumberToObject(o, "pipetrain_vocab_size", c->vocab_size)) &&
             cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_seq_len) &&
             cJSON_AddNumberToObject(o, "rms_norm_eps", short_float(c->rms_norm_eps)) &&
             cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta) &&
             cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings) &&
             cJSON_AddStringToObject(o, "hidden_act", "silu") && cJSON_AddBoolToObject(o, "attention_bias", 0) &&
             cJSON_AddNumberToObject(o, "attention_dropout", 0.0) && cJSON_AddBoolToObject(o, "mlp_bias", 0) &&
             cJSON_AddNumberToObject(o, "initializer_range", 0.02) &&
             cJSON_AddNumberToObject(o, "pretraining_tp", 1) && cJSON_AddBoolToObject(o, "use_cache", 1) &&
             cJSON_AddStringToObject(o, "torch_dtype", bf16 ? "bfloat16" : "float32");
    if (ok && c->rope_scaling_factor != 0.0) {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        ok = rs && cJSON_AddNumberToObject(rs, "factor", c->rope_scaling_factor) &&
             cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq_factor) &&
             cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq_factor) &&
             cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_original_max_pos) &&
             cJSON_AddStringToObject(rs, "rope_type", "llama3");
    } else if (ok) {
        ok = cJSON_AddNullToObject(o, "rope_scaling") != NULL;
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

typedef struct export_item {
    pt_model *m;
    const pt_param *p;
    hf_piece q;
    uint64_t bytes; /* on disk */
    int shard;
} export_item;

static int same_config(const pt_model_config *a, const pt_model_config *b)
{
    return a->arch == b->arch && a->n_layer == b->n_layer && a->n_head == b->n_head && a->n_embd == b->n_embd &&
           a->vocab_size == b->vocab_size && a->vocab_padded == b->vocab_padded && a->max_seq_len == b->max_seq_len &&
           pt_model_kv_heads(a) == pt_model_kv_heads(b) && a->intermediate_size == b->intermediate_size &&
           pt_model_tied(a) == pt_model_tied(b);
}

/* Removes the weight files of an earlier export that this one does not rewrite (a transformers
 * loader would prefer a stale model.safetensors to a new index). */
static pt_status remove_stale(const char *dir, int sharded, int n_shards)
{
    DIR *d = opendir(dir);
    if (!d)
        return pt_fail(PT_EIO, "cannot read directory %s: %s", dir, strerror(errno));
    struct dirent *e;
    pt_status st = PT_OK;
    while ((e = readdir(d)) && st == PT_OK) {
        int i = 0, n = 0, used = 0, stale = 0;
        if (strcmp(e->d_name, HF_SINGLE) == 0 || strcmp(e->d_name, HF_INDEX) == 0)
            stale = sharded == (strcmp(e->d_name, HF_SINGLE) == 0);
        else if (sscanf(e->d_name, "model-%5d-of-%5d.safetensors%n", &i, &n, &used) == 2 && used > 0 &&
                 e->d_name[used] == 0)
            stale = !sharded || n != n_shards;
        if (!stale)
            continue;
        char p[HF_PATH];
        st = join(p, dir, e->d_name);
        if (st == PT_OK && unlink(p) != 0 && errno != ENOENT)
            st = pt_fail(PT_EIO, "cannot remove the stale %s: %s", p, strerror(errno));
    }
    closedir(d);
    return st;
}

pt_status pt_model_export_hf_llama(pt_model *const *models, int n, const char *out, const pt_hf_export_opts *opts)
{
    const pt_hf_export_opts defaults = { 0 };
    if (!opts)
        opts = &defaults;
    if (n < 1)
        return pt_fail(PT_EINVAL, "export to %s: no models given", out);
    for (int k = 0; k < n; k++)
        PT_CHECK(pt_hf_refuse_tp(models[k], out, "export"));
    const pt_model_config *cfg = pt_model_config_of(models[0]);
    if (cfg->arch != PT_ARCH_LLAMA)
        return pt_fail(PT_EINVAL, "export to %s: %s is not a llama model (GPT-2 exports with "
                                  "pt_model_export_hf_safetensors)",
                       out, cfg->name);
    for (int k = 1; k < n; k++)
        if (!same_config(cfg, pt_model_config_of(models[k])))
            return pt_fail(PT_EINVAL, "export to %s: chunk %d has a different model config than chunk 0", out, k);
    const int single_file = ends_with(out, ".safetensors");
    const size_t dsize = opts->bf16 ? 2 : 4;
    pt_hf_owned *order = NULL;
    int n_order = 0;
    size_t cap = 1;
    PT_CHECK(pt_hf_export_order(models, n, out, &order, &n_order, &cap));
    export_item *items = calloc(3 * (size_t)n_order + 1, sizeof *items);
    if (!items) {
        free(order);
        return pt_fail(PT_ENOMEM, "out of memory exporting %s", out);
    }
    pt_status st = PT_OK;
    float *host = NULL;
    uint16_t *half = NULL;
    pt_safetensors_writer *w = NULL;
    cJSON *hf = NULL, *index = NULL, *pcfg = NULL;
    char *pcfg_text = NULL;
    int n_items = 0;
    for (int o = 0; o < n_order; o++) {
        hf_piece q[3];
        int np = 0;
        PT_TRY(llama_pieces(cfg, order[o].p->name, q, &np), done);
        for (int k = 0; k < np; k++) {
            items[n_items] = (export_item){ .m = order[o].m, .p = order[o].p, .q = q[k] };
            items[n_items].bytes = (uint64_t)q[k].rows * (uint64_t)(q[k].cols ? q[k].cols : 1) * dsize;
            n_items++;
        }
    }
    /* shards: greedy in order, a tensor larger than the limit alone in its shard */
    uint64_t total = 0, cur = 0;
    int n_shards = 1;
    for (int j = 0; j < n_items; j++) {
        total += items[j].bytes;
        if (!single_file && opts->shard_bytes && cur > 0 && cur + items[j].bytes > opts->shard_bytes) {
            n_shards++;
            cur = 0;
        }
        items[j].shard = n_shards - 1;
        cur += items[j].bytes;
    }
    const int sharded = n_shards > 1;
    host = malloc(cap * sizeof(float));
    half = opts->bf16 ? malloc(cap * sizeof(uint16_t)) : NULL;
    if (!host || (opts->bf16 && !half)) {
        st = pt_fail(PT_ENOMEM, "out of memory exporting %s (%zu floats)", out, cap);
        goto done;
    }
    if (single_file) {
        pcfg = pt_model_config_to_json(cfg);
        pcfg_text = pcfg ? cJSON_PrintUnformatted(pcfg) : NULL;
        if (!pcfg_text) {
            st = pt_fail(PT_ENOMEM, "out of memory exporting %s", out);
            goto done;
        }
    } else {
        PT_TRY(pt_mkdirs(out), done);
        PT_TRY(remove_stale(out, sharded, n_shards), done);
        hf = pt_model_config_to_hf_json(cfg, opts->bf16);
        if (!hf) {
            st = pt_fail(PT_ENOMEM, "out of memory exporting %s", out);
            goto done;
        }
        char p[HF_PATH];
        PT_TRY(join(p, out, "config.json"), done);
        PT_TRY(pt_json_write_file(p, hf, 0), done);
    }
    if (sharded) {
        index = cJSON_CreateObject();
        cJSON *meta = index ? cJSON_AddObjectToObject(index, "metadata") : NULL;
        cJSON *map = meta && cJSON_AddNumberToObject(meta, "total_size", (double)total)
                         ? cJSON_AddObjectToObject(index, "weight_map")
                         : NULL;
        if (!map) {
            st = pt_fail(PT_ENOMEM, "out of memory exporting %s", out);
            goto done;
        }
    }
    const pt_param *staged = NULL; /* the tensor now in host (pieces of one tensor are consecutive) */
    for (int s = 0, j0 = 0; s < n_shards; s++) {
        char fname[64], path[HF_PATH];
        if (sharded)
            snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        else
            snprintf(fname, sizeof fname, "%s", HF_SINGLE);
        if (single_file)
            snprintf(path, sizeof path, "%s", out);
        else
            PT_TRY(join(path, out, fname), done);
        PT_TRY(pt_safetensors_writer_create(path, &w), done);
        PT_TRY(pt_safetensors_writer_set_metadata(w, "format", "pt"), done);
        if (pcfg_text)
            PT_TRY(pt_safetensors_writer_set_metadata(w, "pipetrain_config", pcfg_text), done);
        int j1 = j0;
        while (j1 < n_items && items[j1].shard == s)
            j1++;
        for (int j = j0; j < j1; j++) {
            const hf_piece *q = &items[j].q;
            int64_t shape[2] = { q->rows, q->cols };
            PT_TRY(pt_safetensors_writer_declare(w, q->name, opts->bf16 ? PT_ST_BF16 : PT_ST_F32, q->cols ? 2 : 1,
                                                 shape),
                   done);
            if (index)
                cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(index, "weight_map"), q->name, fname);
        }
        for (int j = j0; j < j1; j++) {
            const pt_param *p = items[j].p;
            pt_model *m = items[j].m;
            if (staged != p) {
                PT_TRY(pt_model_backend(m)->memcpy_d2h(pt_model_stream(m), host, pt_model_params(m) + p->offset,
                                                       p->numel * sizeof(float)),
                       done);
                staged = p;
            }
            const hf_piece *q = &items[j].q;
            size_t off = (size_t)q->row0 * (size_t)(q->cols ? q->cols : 1);
            size_t cnt = (size_t)q->rows * (size_t)(q->cols ? q->cols : 1);
            if (opts->bf16) {
                for (size_t e = 0; e < cnt; e++)
                    half[e] = pt_f32_to_bf16(host[off + e]);
                PT_TRY(pt_safetensors_writer_write(w, half, cnt * sizeof(uint16_t)), done);
            } else {
                PT_TRY(pt_safetensors_writer_write(w, host + off, cnt * sizeof(float)), done);
            }
        }
        PT_TRY(pt_safetensors_writer_finish(w), done);
        pt_safetensors_writer_destroy(w);
        w = NULL;
        j0 = j1;
    }
    if (index) { /* last, so that an index never names a shard not yet written */
        char p[HF_PATH];
        PT_TRY(join(p, out, HF_INDEX), done);
        PT_TRY(pt_json_write_file(p, index, 0), done);
    }
done:
    pt_safetensors_writer_destroy(w);
    cJSON_Delete(hf);
    cJSON_Delete(index);
    cJSON_Delete(pcfg);
    free(pcfg_text);
    free(half);
    free(host);
    free(items);
    free(order);
    return st;
}
