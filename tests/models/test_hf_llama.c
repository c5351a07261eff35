/* models.hf_llama: Hugging Face Llama checkpoints in and out (models/hf_llama.c).
 *  - config.json -> pt_model_config (every field, transformers' defaults, Llama 3.1 rope scaling),
 *    through pt_model_config_from_hf and pt_model_config_load (a directory, its config.json), and
 *    every unsupported feature refused naming its field
 *  - a tiny LlamaForCausalLM directory written here (this test's own writer of config.json and
 *    safetensors: F32 and BF16, one file and sharded with an index, tied and untied) is imported
 *    into one chunk and into three, every pipetrain tensor equal to the Hugging Face tensors
 *    stacked by this test's own map; exported again (same dtype), every tensor's bytes equal the
 *    original's; sharded export -> import -> export gives the same model.safetensors bytes; the
 *    single-file export carries its config; an F16 checkpoint reads as float
 *  - missing, misshapen and extra (bias, q/k-norm) tensors, a config that disagrees with
 *    config.json, a padded vocabulary and bad indexes: one error naming the tensor/field and file */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipetrain/backend.h"
#include "pipetrain/json.h"
#include "pipetrain/model.h"
#include "pipetrain/safetensors.h"
#include "test_common.h"

static const pt_backend *be;
static pt_stream *stream;
static char root[64];

/* ---- a tiny Hugging Face Llama directory ---- */

typedef struct hf_case {
    int L, NH, NKV, C, H, V, T;
    int tied, bf16, shards; /* shards: 1, or 2 (layers split in halves) with an index */
    const char *extra_json; /* keys merged into config.json (may replace) */
    const char *drop;       /* a tensor left out */
    const char *widen;      /* a tensor written with 2 more rows */
    const char *add;        /* an extra tensor (C floats) */
    const char *bad_index;  /* a weight_map value put on the first tensor */
    int bare;               /* names without "model." (a LlamaModel's checkpoint) */
} hf_case;

static const hf_case tiny = { .L = 3, .NH = 4, .NKV = 2, .C = 32, .H = 48, .V = 64, .T = 32, .shards = 1 };

/* A value that depends only on (HF tensor name, index), with -0 and a subnormal among them. The BF16
 * files hold its top 16 bits. */
static uint32_t bits_of(const char *name, size_t i)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h ^= (i + 1) * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 29;
    if (i % 61 == 3)
        return 0x80000000u; /* -0 */
    if (i % 67 == 5)
        return 0x00010000u | (uint32_t)(h & 0xffff); /* subnormal */
    float f = ((float)(h >> 40) / 16777216.0f - 0.5f) * 0.1f;
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* The bits a file of the case holds for element i of tensor `name`. */
static uint16_t f16_of(uint32_t b) { return (uint16_t)(b >> 16) & 0xbfff; } /* exponent < 16: finite */

/* The value element i of `name` holds once read: bf16 1: the BF16 file's top 16 bits; 2: an F16 file. */
static float value_of(const char *name, size_t i, int bf16)
{
    uint32_t b = bits_of(name, i);
    if (bf16 == 2)
        return pt_f16_to_f32(f16_of(b));
    if (bf16)
        b &= 0xffff0000u;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

typedef struct hf_tensor {
    char name[128];
    int rows, cols; /* cols 0: a vector */
    int shard;
} hf_tensor;

/* The LlamaForCausalLM tensors of a case, in Hugging Face's order. */
static int hf_tensors(const hf_case *c, hf_tensor *t)
{
    int n = 0, kv = c->NKV * (c->C / c->NH);
#define ADD(r, k, sh, ...)                                                                                             \
    do {                                                                                                               \
        snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__);                                                            \
        t[n].rows = (r);                                                                                               \
        t[n].cols = (k);                                                                                               \
        t[n].shard = (sh);                                                                                             \
        n++;                                                                                                           \
    } while (0)
    ADD(c->V, c->C, 0, "model.embed_tokens.weight");
    for (int i = 0; i < c->L; i++) {
        int sh = c->shards > 1 && i >= c->L / 2;
        ADD(c->C, 0, sh, "model.layers.%d.input_layernorm.weight", i);
        ADD(c->C, c->C, sh, "model.layers.%d.self_attn.q_proj.weight", i);
        ADD(kv, c->C, sh, "model.layers.%d.self_attn.k_proj.weight", i);
        ADD(kv, c->C, sh, "model.layers.%d.self_attn.v_proj.weight", i);
        ADD(c->C, c->C, sh, "model.layers.%d.self_attn.o_proj.weight", i);
        ADD(c->C, 0, sh, "model.layers.%d.post_attention_layernorm.weight", i);
        ADD(c->H, c->C, sh, "model.layers.%d.mlp.gate_proj.weight", i);
        ADD(c->H, c->C, sh, "model.layers.%d.mlp.up_proj.weight", i);
        ADD(c->C, c->H, sh, "model.layers.%d.mlp.down_proj.weight", i);
    }
    ADD(c->C, 0, c->shards > 1, "model.norm.weight");
    if (!c->tied)
        ADD(c->V, c->C, c->shards > 1, "lm_head.weight");
#undef ADD
    return n;
}

static void write_config(const hf_case *c, const char *dir)
{
    cJSON *o = cJSON_CreateObject();
    const char *arch[] = { "LlamaForCausalLM" };
    cJSON_AddItemToObject(o, "architectures", cJSON_CreateStringArray(arch, 1));
    cJSON_AddStringToObject(o, "model_type", "llama");
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->L);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->NH);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->NKV);
    cJSON_AddNumberToObject(o, "hidden_size", c->C);
    cJSON_AddNumberToObject(o, "intermediate_size", c->H);
    cJSON_AddNumberToObject(o, "vocab_size", c->V);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->T);
    cJSON_AddNumberToObject(o, "rms_norm_eps", 1e-05);
    cJSON_AddNumberToObject(o, "rope_theta", 500000.0);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tied);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddBoolToObject(o, "attention_bias", 0);
    cJSON_AddNullToObject(o, "rope_scaling");
    cJSON_AddStringToObject(o, "torch_dtype", c->bf16 ? "bfloat16" : "float32");
    if (c->extra_json) {
        cJSON *x = cJSON_Parse(c->extra_json), *e;
        if (!x) {
            fprintf(stderr, "bad extra_json %s\n", c->extra_json);
            exit(1);
        }
        cJSON_ArrayForEach(e, x)
        {
            cJSON_DeleteItemFromObjectCaseSensitive(o, e->string);
            cJSON_AddItemToObject(o, e->string, cJSON_Duplicate(e, 1));
        }
        cJSON_Delete(x);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    EXPECT_OK(pt_json_write_file(path, o, 0));
    cJSON_Delete(o);
}

/* Writes dir/config.json and the weights (model.safetensors, or two shards and the index). */
static void write_hf(const hf_case *c, const char *dir)
{
    mkdir(dir, 0755);
    write_config(c, dir);
    hf_tensor t[64];
    int n = hf_tensors(c, t);
    cJSON *index = cJSON_CreateObject(), *map = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(index, "metadata");
    uint64_t total = 0;
    for (int s = 0; s < c->shards; s++) {
        char fname[64], path[256];
        if (c->shards == 1)
            snprintf(fname, sizeof fname, "model.safetensors");
        else
            snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, c->shards);
        snprintf(path, sizeof path, "%s/%s", dir, fname);
        pt_safetensors_writer *w;
        EXPECT_OK(pt_safetensors_writer_create(path, &w));
        EXPECT_OK(pt_safetensors_writer_set_metadata(w, "format", "pt"));
        const pt_st_dtype dt = c->bf16 == 2 ? PT_ST_F16 : c->bf16 ? PT_ST_BF16 : PT_ST_F32;
        for (int j = 0; j < n; j++) {
            if (t[j].shard != s || (c->drop && strcmp(t[j].name, c->drop) == 0))
                continue;
            int64_t shape[2] = { t[j].rows + (c->widen && strcmp(t[j].name, c->widen) == 0 ? 2 : 0), t[j].cols };
            const char *nm = c->bare && strncmp(t[j].name, "model.", 6) == 0 ? t[j].name + 6 : t[j].name;
            EXPECT_OK(pt_safetensors_writer_declare(w, nm, dt, t[j].cols ? 2 : 1, shape));
            cJSON_AddStringToObject(map, nm, j == 0 && c->bad_index ? c->bad_index : fname);
            total += (uint64_t)shape[0] * (t[j].cols ? t[j].cols : 1) * (c->bf16 ? 2 : 4);
        }
        if (c->add && s == 0) {
            int64_t shape[1] = { c->C };
            EXPECT_OK(pt_safetensors_writer_declare(w, c->add, dt, 1, shape));
            cJSON_AddStringToObject(map, c->add, fname);
        }
        for (int j = 0; j < n; j++) {
            if (t[j].shard != s || (c->drop && strcmp(t[j].name, c->drop) == 0))
                continue;
            size_t cnt = (size_t)(t[j].rows + (c->widen && strcmp(t[j].name, c->widen) == 0 ? 2 : 0)) *
                         (size_t)(t[j].cols ? t[j].cols : 1);
            for (size_t e = 0; e < cnt; e++) {
                uint32_t b = bits_of(t[j].name, e);
                if (c->bf16) {
                    uint16_t h = c->bf16 == 2 ? f16_of(b) : (uint16_t)(b >> 16);
                    EXPECT_OK(pt_safetensors_writer_write(w, &h, 2));
                } else {
                    EXPECT_OK(pt_safetensors_writer_write(w, &b, 4));
                }
            }
        }
        if (c->add && s == 0)
            for (int e = 0; e < c->C; e++) {
                float one = 1.0f;
                uint16_t h = pt_f32_to_bf16(one);
                EXPECT_OK(c->bf16 ? pt_safetensors_writer_write(w, &h, 2) : pt_safetensors_writer_write(w, &one, 4));
            }
        EXPECT_OK(pt_safetensors_writer_finish(w));
        pt_safetensors_writer_destroy(w);
    }
    if (c->shards > 1) {
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        cJSON_AddItemToObject(index, "weight_map", map);
        map = NULL;
        char path[256];
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        EXPECT_OK(pt_json_write_file(path, index, 0));
    }
    cJSON_Delete(map);
    cJSON_Delete(index);
}

/* ---- reading checkpoints back, independently of models/ ---- */

/* The raw bytes of tensor `name` of a checkpoint directory (one file or an index); NULL if absent. */
static void *read_raw(const char *dir, const char *name, size_t *bytes, pt_st_dtype *dt)
{
    char path[256], idx[256];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) != 0) {
        cJSON *root = NULL;
        if (pt_json_read_file(idx, &root) != PT_OK)
            return NULL;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "weight_map"), name);
        if (cJSON_IsString(f))
            snprintf(path, sizeof path, "%s/%s", dir, f->valuestring);
        cJSON_Delete(root);
        if (!cJSON_IsString(f))
            return NULL;
    }
    pt_safetensors *f;
    if (pt_safetensors_open(path, &f) != PT_OK)
        return NULL;
    const pt_safetensors_tensor *t = pt_safetensors_find(f, name);
    void *buf = NULL;
    if (t) {
        buf = malloc(t->nbytes ? t->nbytes : 1);
        *bytes = t->nbytes;
        *dt = t->dtype;
        if (pt_safetensors_read(f, t, buf, t->nbytes) != PT_OK) {
            free(buf);
            buf = NULL;
        }
    }
    pt_safetensors_close(f);
    return buf;
}

/* Every tensor of the case is in `dir` with the bytes the case wrote, and nothing else is. */
static int same_tensors(const hf_case *c, const char *dir)
{
    hf_tensor t[64];
    int n = hf_tensors(c, t), ok = 1;
    for (int j = 0; j < n && ok; j++) {
        size_t bytes = 0;
        pt_st_dtype dt = PT_ST_F32;
        uint8_t *got = read_raw(dir, t[j].name, &bytes, &dt);
        size_t cnt = (size_t)t[j].rows * (size_t)(t[j].cols ? t[j].cols : 1);
        if (!got || dt != (c->bf16 ? PT_ST_BF16 : PT_ST_F32) || bytes != cnt * (c->bf16 ? 2 : 4)) {
            fprintf(stderr, "%s: tensor %s missing or of another dtype/size\n", dir, t[j].name);
            ok = 0;
        }
        for (size_t e = 0; ok && e < cnt; e++) {
            uint32_t b = bits_of(t[j].name, e), g = 0;
            if (c->bf16) {
                uint16_t h;
                memcpy(&h, got + 2 * e, 2);
                g = (uint32_t)h << 16;
                b &= 0xffff0000u;
            } else {
                memcpy(&g, got + 4 * e, 4);
            }
            if (g != b) {
                fprintf(stderr, "%s: %s[%zu] is %08x, want %08x\n", dir, t[j].name, e, g, b);
                ok = 0;
            }
        }
        free(got);
    }
    /* nothing else: count the tensors of every weight file in dir */
    int files_tensors = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "model", 5) != 0 || !strstr(e->d_name, ".safetensors") ||
            strstr(e->d_name, ".json"))
            continue;
        char path[300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        pt_safetensors *f;
        if (pt_safetensors_open(path, &f) == PT_OK) {
            files_tensors += pt_safetensors_n_tensors(f);
            pt_safetensors_close(f);
        }
    }
    if (d)
        closedir(d);
    if (files_tensors != n) {
        fprintf(stderr, "%s holds %d tensors, want %d\n", dir, files_tensors, n);
        ok = 0;
    }
    return ok;
}

/* Files named model-NNNNN-of-NNNNN.safetensors in dir. */
static int count_shards(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, "model-", 6) == 0 && strstr(e->d_name, "-of-") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* ---- models ---- */

static pt_model *make_model(const pt_model_config *cfg, int first, int last)
{
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 1, .n_slots = 1 };
    pt_model *m = NULL;
    if (pt_model_create(cfg, first, last, &mo, be, stream, &m) != PT_OK) {
        fprintf(stderr, "model create: %s\n", pt_last_error());
        exit(1);
    }
    return m;
}

/* The expected values of pipetrain tensor p: the case's HF tensors stacked by this test's map. */
static int model_matches(const hf_case *c, pt_model *m)
{
    const int C = c->C, kv = c->NKV * (C / c->NH), H = c->H;
    for (int i = 0; i < pt_model_n_tensors(m); i++) {
        const pt_param *p = pt_model_tensor(m, i);
        float *got = malloc(p->numel * sizeof(float));
        EXPECT_OK(be->memcpy_d2h(stream, got, pt_model_params(m) + p->offset, p->numel * sizeof(float)));
        const char *parts[3] = { NULL, NULL, NULL };
        int rows[3] = { 0 }, b = -1, used = 0;
        char nm[3][128];
        const char *rest = "";
        if (sscanf(p->name, "blocks.%d.%n", &b, &used) == 1 && used > 0)
            rest = p->name + used;
#define PART(k, r, ...) (snprintf(nm[k], sizeof nm[k], __VA_ARGS__), parts[k] = nm[k], rows[k] = (r))
        if (!strcmp(p->name, "wte.weight"))
            PART(0, c->V, "model.embed_tokens.weight");
        else if (!strcmp(p->name, "lm_head.weight"))
            PART(0, c->V, "lm_head.weight");
        else if (!strcmp(p->name, "lnf.weight"))
            PART(0, C, "model.norm.weight");
        else if (!strcmp(rest, "ln1.weight"))
            PART(0, C, "model.layers.%d.input_layernorm.weight", b);
        else if (!strcmp(rest, "ln2.weight"))
            PART(0, C, "model.layers.%d.post_attention_layernorm.weight", b);
        else if (!strcmp(rest, "attn.proj.weight"))
            PART(0, C, "model.layers.%d.self_attn.o_proj.weight", b);
        else if (!strcmp(rest, "mlp.down.weight"))
            PART(0, C, "model.layers.%d.mlp.down_proj.weight", b);
        else if (!strcmp(rest, "attn.qkv.weight")) {
            PART(0, C, "model.layers.%d.self_attn.q_proj.weight", b);
            PART(1, kv, "model.layers.%d.self_attn.k_proj.weight", b);
            PART(2, kv, "model.layers.%d.self_attn.v_proj.weight", b);
        } else if (!strcmp(rest, "mlp.gate_up.weight")) {
            PART(0, H, "model.layers.%d.mlp.gate_proj.weight", b);
            PART(1, H, "model.layers.%d.mlp.up_proj.weight", b);
        }
#undef PART
        if (!parts[0]) {
            fprintf(stderr, "no map for %s\n", p->name);
            free(got);
            return 0;
        }
        size_t cols = p->ndim == 2 ? (size_t)p->shape[1] : 1, off = 0;
        for (int k = 0; k < 3 && parts[k]; k++) {
            for (size_t e = 0; e < (size_t)rows[k] * cols; e++) {
                float want = value_of(parts[k], e, c->bf16);
                if (memcmp(&want, &got[off + e], 4) != 0) {
                    fprintf(stderr, "%s[%zu] (from %s[%zu]) is %a, want %a\n", p->name, off + e, parts[k], e,
                            got[off + e], want);
                    free(got);
                    return 0;
                }
            }
            off += (size_t)rows[k] * cols;
        }
        if (off != p->numel) {
            fprintf(stderr, "%s: the map covers %zu of %zu values\n", p->name, off, p->numel);
            free(got);
            return 0;
        }
        free(got);
    }
    return 1;
}

static void destroy_all(pt_model **m, int n)
{
    for (int i = 0; i < n; i++)
        pt_model_destroy(m[i]);
}

/* Import, compare, export (same dtype), compare bytes; sharded and single-file round trips. */
static void round_trip(const hf_case *c, const char *tag)
{
    char src[128], out[160], sh[160], out3[160], one[160];
    snprintf(src, sizeof src, "%s/%s", root, tag);
    snprintf(out, sizeof out, "%s/%s-out", root, tag);
    snprintf(sh, sizeof sh, "%s/%s-sharded", root, tag);
    snprintf(out3, sizeof out3, "%s/%s-out3", root, tag);
    snprintf(one, sizeof one, "%s/%s-one.safetensors", root, tag);
    write_hf(c, src);
    pt_model_config cfg;
    EXPECT_OK(pt_model_config_from_safetensors(src, &cfg));
    EXPECT(cfg.arch == PT_ARCH_LLAMA && cfg.n_layer == c->L && pt_model_tied(&cfg) == c->tied &&
           strcmp(cfg.name, tag) == 0);
    const int last = pt_model_n_layers(&cfg) - 1;
    pt_model *m = make_model(&cfg, 0, last);
    EXPECT_OK(pt_model_load_hf_safetensors(m, src));
    EXPECT(model_matches(c, m));
    pt_hf_export_opts eo = { .bf16 = c->bf16 };
    EXPECT_OK(pt_model_export_hf_llama(&m, 1, out, &eo));
    EXPECT(same_tensors(c, out));
    pt_model_config back;
    EXPECT_OK(pt_model_config_from_hf(out, &back));
    memcpy(back.name, cfg.name, sizeof back.name);
    EXPECT(memcmp(&back, &cfg, sizeof cfg) == 0);

    /* sharded: about three shards */
    eo.shard_bytes = (uint64_t)pt_model_n_params(m) * (c->bf16 ? 2 : 4) / 3;
    EXPECT_OK(pt_model_export_hf_llama(&m, 1, sh, &eo));
    char p[256];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", sh);
    EXPECT(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors", sh);
    EXPECT(access(p, F_OK) != 0);
    EXPECT(count_shards(sh) >= 3);
    EXPECT(same_tensors(c, sh));

    /* the sharded export into three chunks, exported again as one file: the first export's bytes */
    pt_model *ch[3] = { make_model(&cfg, 0, 1), make_model(&cfg, 2, 3), make_model(&cfg, 4, last) };
    for (int k = 0; k < 3; k++)
        EXPECT_OK(pt_model_load_hf_safetensors(ch[k], sh));
    EXPECT(model_matches(c, ch[0]) && model_matches(c, ch[1]) && model_matches(c, ch[2]));
    eo.shard_bytes = 0;
    EXPECT_OK(pt_model_export_hf_llama(ch, 3, out3, &eo));
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/model.safetensors", out);
    snprintf(b, sizeof b, "%s/model.safetensors", out3);
    EXPECT(same_file(a, b));
    snprintf(a, sizeof a, "%s/config.json", out);
    snprintf(b, sizeof b, "%s/config.json", out3);
    EXPECT(same_file(a, b));
    destroy_all(ch, 3);

    /* one file, the config in its metadata (a config.json beside it that is not a Hugging Face one,
     * like a training run's, is not taken for the model's) */
    char runcfg[200];
    snprintf(runcfg, sizeof runcfg, "%s/config.json", root);
    FILE *rf = fopen(runcfg, "w");
    if (rf) {
        fputs("{\"model\": {\"name\": \"llama-tiny\"}, \"steps\": 10}\n", rf);
        fclose(rf);
    }
    EXPECT_OK(pt_model_export_hf_llama(&m, 1, one, &eo));
    pt_model_config fc;
    EXPECT_OK(pt_model_config_from_safetensors(one, &fc));
    EXPECT(fc.n_layer == cfg.n_layer && fc.n_kv_head == cfg.n_kv_head && fc.rope_theta == cfg.rope_theta &&
           fc.tie_word_embeddings == cfg.tie_word_embeddings);
    pt_model *m1 = make_model(&fc, 0, last);
    EXPECT_OK(pt_model_load_hf_safetensors(m1, one));
    EXPECT(model_matches(c, m1));
    /* a plain export into the sharded directory: its shards and index go */
    EXPECT_OK(pt_model_export_hf_llama(&m1, 1, sh, &eo));
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", sh);
    EXPECT(access(p, F_OK) != 0);
    EXPECT(count_shards(sh) == 0);
    snprintf(a, sizeof a, "%s/model.safetensors", out);
    snprintf(b, sizeof b, "%s/model.safetensors", sh);
    EXPECT(same_file(a, b));
    pt_model_destroy(m1);
    pt_model_destroy(m);
}

/* ---- refusals ---- */

static void expect_config_refused(const char *extra, const char *needle)
{
    hf_case c = tiny;
    c.extra_json = extra;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/cfg", root);
    mkdir(dir, 0755);
    write_config(&c, dir);
    pt_model_config cfg;
    pt_status st = pt_model_config_from_hf(dir, &cfg);
    if (st != PT_EINVAL || !strstr(pt_last_error(), needle)) {
        fprintf(stderr, "config %s: expected PT_EINVAL naming \"%s\", got %d: %s\n", extra, needle, (int)st,
                pt_last_error());
        failures++;
    }
}

static pt_status load_case(const hf_case *c, const char *tag, pt_model_config *override)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", root, tag);
    write_hf(c, dir);
    pt_model_config cfg;
    pt_status st = pt_model_config_from_hf(dir, &cfg);
    if (st != PT_OK)
        return st;
    if (override)
        cfg = *override;
    pt_model *m = make_model(&cfg, 0, pt_model_n_layers(&cfg) - 1);
    st = pt_model_load_hf_safetensors(m, dir);
    pt_model_destroy(m);
    return st;
}

static void expect_load_refused(const hf_case *c, const char *tag, pt_model_config *override, pt_status code,
                                const char *n1, const char *n2, const char *n3)
{
    pt_status st = load_case(c, tag, override);
    const char *e = pt_last_error();
    if (st != code || !strstr(e, n1) || (n2 && !strstr(e, n2)) || (n3 && !strstr(e, n3))) {
        fprintf(stderr, "%s: expected %d naming \"%s\" \"%s\" \"%s\", got %d: %s\n", tag, (int)code, n1,
                n2 ? n2 : "", n3 ? n3 : "", (int)st, e);
        failures++;
    }
}

int main(void)
{
    EXPECT_OK(pt_backend_get("cpu", &be));
    EXPECT_OK(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &stream));
    snprintf(root, sizeof root, "/tmp/pt_hf_llama_XXXXXX");
    if (!mkdtemp(root))
        return 1;

    /* ---- config.json ---- */
    {
        hf_case c = tiny;
        c.extra_json = "{\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                       "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16}, \"head_dim\": 8}";
        char dir[128];
        snprintf(dir, sizeof dir, "%s/Tiny-Llama-3", root);
        mkdir(dir, 0755);
        write_config(&c, dir);
        pt_model_config cfg;
        EXPECT_OK(pt_model_config_from_hf(dir, &cfg));
        EXPECT(cfg.arch == PT_ARCH_LLAMA && cfg.n_layer == 3 && cfg.n_head == 4 && cfg.n_kv_head == 2 &&
               cfg.n_embd == 32 && cfg.intermediate_size == 48 && cfg.vocab_size == 64 && cfg.vocab_padded == 64 &&
               cfg.max_seq_len == 32 && cfg.rms_norm_eps == 1e-5f && cfg.rope_theta == 500000.0 &&
               !cfg.tie_word_embeddings && cfg.rope_scaling_factor == 8.0 && cfg.rope_low_freq_factor == 1.0 &&
               cfg.rope_high_freq_factor == 4.0 && cfg.rope_original_max_pos == 16 &&
               strcmp(cfg.name, "Tiny-Llama-3") == 0);
        /* pt_model_config_load takes the directory or its config.json (train/plan --model DIR) */
        pt_model_config c2, c3;
        EXPECT_OK(pt_model_config_load(dir, &c2));
        char cj[160];
        snprintf(cj, sizeof cj, "%s/config.json", dir);
        EXPECT_OK(pt_model_config_load(cj, &c3));
        EXPECT(memcmp(&c2, &cfg, sizeof cfg) == 0 && memcmp(&c3, &cfg, sizeof cfg) == 0);
        /* transformers' defaults: no kv heads = MHA, eps 1e-6, theta 10000, untied */
        c.extra_json = "{\"num_key_value_heads\": null, \"rms_norm_eps\": null, \"rope_theta\": null, "
                       "\"tie_word_embeddings\": null, \"rope_scaling\": {\"rope_type\": \"default\"}}";
        write_config(&c, dir);
        EXPECT_OK(pt_model_config_from_hf(dir, &cfg));
        EXPECT(cfg.n_kv_head == 4 && cfg.rms_norm_eps == 1e-6f && cfg.rope_theta == 10000.0 &&
               !cfg.tie_word_embeddings && cfg.rope_scaling_factor == 0.0);
        /* Mistral without a window and Qwen2 with the window off load */
        c.extra_json = "{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": \"mistral\", "
                       "\"sliding_window\": null}";
        write_config(&c, dir);
        EXPECT_OK(pt_model_config_from_hf(dir, &cfg));
        c.extra_json = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", "
                       "\"use_sliding_window\": false, \"sliding_window\": 4096, \"max_window_layers\": 2}";
        write_config(&c, dir);
        EXPECT_OK(pt_model_config_from_hf(dir, &cfg));
        /* pipetrain's export of a padded vocabulary */
        c.extra_json = "{\"vocab_size\": 128, \"pipetrain_vocab_size\": 100}";
        write_config(&c, dir);
        EXPECT_OK(pt_model_config_from_hf(dir, &cfg));
        EXPECT(cfg.vocab_size == 100 && cfg.vocab_padded == 128);
    }
    /* the published config.json of meta-llama/Llama-3.2-1B and Meta-Llama-3-8B: the presets */
    {
        static const char *const published[][2] = {
            { "llama3.2-1b",
              "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0, "
              "\"bos_token_id\": 128000, \"eos_token_id\": 128001, \"head_dim\": 64, \"hidden_act\": \"silu\", "
              "\"hidden_size\": 2048, \"initializer_range\": 0.02, \"intermediate_size\": 8192, "
              "\"max_position_embeddings\": 131072, \"mlp_bias\": false, \"model_type\": \"llama\", "
              "\"num_attention_heads\": 32, \"num_hidden_layers\": 16, \"num_key_value_heads\": 8, "
              "\"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, \"rope_scaling\": {\"factor\": 32.0, "
              "\"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, \"original_max_position_embeddings\": 8192, "
              "\"rope_type\": \"llama3\"}, \"rope_theta\": 500000.0, \"tie_word_embeddings\": true, "
              "\"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.45.0.dev0\", \"use_cache\": true, "
              "\"vocab_size\": 128256}" },
            { "llama3-8b",
              "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0, "
              "\"bos_token_id\": 128000, \"eos_token_id\": 128001, \"hidden_act\": \"silu\", \"hidden_size\": 4096, "
              "\"initializer_range\": 0.02, \"intermediate_size\": 14336, \"max_position_embeddings\": 8192, "
              "\"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 32, "
              "\"num_key_value_heads\": 8, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, \"rope_scaling\": null, "
              "\"rope_theta\": 500000.0, \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", "
              "\"transformers_version\": \"4.40.0.dev0\", \"use_cache\": true, \"vocab_size\": 128256}" },
        };
        for (size_t i = 0; i < sizeof published / sizeof published[0]; i++) {
            cJSON *j = cJSON_Parse(published[i][1]);
            pt_model_config got, want;
            EXPECT_OK(pt_model_config_from_hf_json(j, published[i][0], &got));
            EXPECT_OK(pt_model_config_load(published[i][0], &want));
            memcpy(got.name, want.name, sizeof got.name);
            EXPECT(memcmp(&got, &want, sizeof got) == 0);
            /* and back: config.json of the preset parses to the preset */
            cJSON *back = pt_model_config_to_hf_json(&want, 1);
            pt_model_config again;
            EXPECT_OK(pt_model_config_from_hf_json(back, "back", &again));
            memcpy(again.name, want.name, sizeof again.name);
            EXPECT(memcmp(&again, &want, sizeof again) == 0);
            cJSON_Delete(back);
            cJSON_Delete(j);
        }
    }
    expect_config_refused("{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": \"mistral\", "
                          "\"sliding_window\": 4096}",
                          "sliding_window");
    expect_config_refused("{\"architectures\": [\"MistralForCausalLM\"], \"use_sliding_window\": false, "
                          "\"sliding_window\": 4096}",
                          "sliding_window");
    expect_config_refused("{\"architectures\": [\"Qwen2ForCausalLM\"], \"use_sliding_window\": true}",
                          "use_sliding_window");
    expect_config_refused("{\"num_local_experts\": 8}", "num_local_experts");
    expect_config_refused("{\"num_experts\": 60}", "num_experts");
    expect_config_refused("{\"architectures\": [\"MixtralForCausalLM\"]}", "MixtralForCausalLM");
    expect_config_refused("{\"attention_bias\": true}", "attention_bias");
    expect_config_refused("{\"mlp_bias\": true}", "mlp_bias");
    expect_config_refused("{\"use_qk_norm\": true}", "use_qk_norm");
    expect_config_refused("{\"head_dim\": 16}", "head_dim");
    expect_config_refused("{\"hidden_act\": \"gelu\"}", "hidden_act");
    expect_config_refused("{\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}", "yarn");
    expect_config_refused("{\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}", "linear");
    expect_config_refused("{\"architectures\": [\"OlmoForCausalLM\"], \"model_type\": \"olmo\"}", "OlmoLayerNorm");
    expect_config_refused("{\"num_key_value_heads\": 3}", "n_kv_head");
    expect_config_refused("{\"num_hidden_layers\": null}", "num_hidden_layers");
    expect_config_refused("{\"partial_rotary_factor\": 0.5}", "partial_rotary_factor");
    {
        char dir[128];
        snprintf(dir, sizeof dir, "%s/empty", root);
        mkdir(dir, 0755);
        pt_model_config cfg;
        EXPECT(pt_model_config_from_hf(dir, &cfg) == PT_EINVAL && strstr(pt_last_error(), "config.json"));
    }

    /* ---- tensors: import, export, byte-identical ---- */
    hf_case c = tiny;
    round_trip(&c, "f32-untied");
    c.bf16 = 1;
    c.tied = 1;
    round_trip(&c, "bf16-tied");
    c.shards = 2;
    round_trip(&c, "bf16-tied-sharded");
    c.bf16 = 0;
    c.tied = 0;
    round_trip(&c, "f32-untied-sharded");

    /* ---- F16 on disk: read as float (pipetrain exports F32 or BF16) ---- */
    {
        hf_case h = tiny;
        h.bf16 = 2;
        h.shards = 2;
        char dir[128];
        snprintf(dir, sizeof dir, "%s/f16", root);
        write_hf(&h, dir);
        pt_model_config cfg;
        EXPECT_OK(pt_model_config_from_safetensors(dir, &cfg));
        pt_model *m = make_model(&cfg, 0, pt_model_n_layers(&cfg) - 1);
        EXPECT_OK(pt_model_load_hf_safetensors(m, dir));
        EXPECT(model_matches(&h, m));
        pt_model_destroy(m);
    }

    /* ---- a bare LlamaModel's names (no "model."), tied as it has no head; sharded too ---- */
    for (int shards = 1; shards <= 2; shards++) {
        hf_case b = tiny;
        b.bare = 1;
        b.tied = 1;
        b.shards = shards;
        char dir[128], out[160];
        snprintf(dir, sizeof dir, "%s/bare%d", root, shards);
        snprintf(out, sizeof out, "%s/bare%d-out", root, shards);
        write_hf(&b, dir);
        pt_model_config cfg;
        EXPECT_OK(pt_model_config_from_safetensors(dir, &cfg));
        pt_model *m = make_model(&cfg, 0, pt_model_n_layers(&cfg) - 1);
        EXPECT_OK(pt_model_load_hf_safetensors(m, dir));
        b.bare = 0;
        EXPECT(model_matches(&b, m));
        EXPECT_OK(pt_model_export_hf_llama(&m, 1, out, NULL)); /* written as LlamaForCausalLM */
        b.shards = 1;
        EXPECT(same_tensors(&b, out));
        pt_model_destroy(m);
    }

    /* ---- a padded vocabulary: every row out, pipetrain_vocab_size, back to the same config ---- */
    {
        char dir[128], out[160];
        snprintf(dir, sizeof dir, "%s/f32-untied", root);
        snprintf(out, sizeof out, "%s/padded-out", root);
        pt_model_config cfg, back;
        EXPECT_OK(pt_model_config_from_hf(dir, &cfg));
        cfg.vocab_size = 50; /* the file's 64 rows are vocab_padded */
        pt_model *m = make_model(&cfg, 0, pt_model_n_layers(&cfg) - 1);
        EXPECT_OK(pt_model_load_hf_safetensors(m, dir));
        EXPECT(model_matches(&tiny, m));
        EXPECT_OK(pt_model_export_hf_llama(&m, 1, out, NULL));
        EXPECT(same_tensors(&tiny, out));
        EXPECT_OK(pt_model_config_from_hf(out, &back));
        EXPECT(back.vocab_size == 50 && back.vocab_padded == 64);
        cJSON *j = NULL;
        char cj[200];
        snprintf(cj, sizeof cj, "%s/config.json", out);
        EXPECT_OK(pt_json_read_file(cj, &j));
        EXPECT(cJSON_GetObjectItem(j, "vocab_size") && cJSON_GetObjectItem(j, "vocab_size")->valueint == 64 &&
               cJSON_GetObjectItem(j, "pipetrain_vocab_size")->valueint == 50);
        cJSON_Delete(j);
        pt_model_destroy(m);
    }

    /* ---- tensors: refusals ---- */
    c = tiny;
    c.drop = "model.layers.1.self_attn.k_proj.weight";
    expect_load_refused(&c, "drop", NULL, PT_EFORMAT, "model.layers.1.self_attn.k_proj.weight", "drop/model.safetensors",
                        "[16,32]");
    c = tiny;
    c.widen = "model.layers.2.self_attn.v_proj.weight";
    expect_load_refused(&c, "widen", NULL, PT_EFORMAT, "model.layers.2.self_attn.v_proj.weight", "[18,32]", "[16,32]");
    c.shards = 2; /* in a shard: the error names the shard's file */
    expect_load_refused(&c, "widen-sharded", NULL, PT_EFORMAT, "model-00002-of-00002.safetensors", "[18,32]",
                        "[16,32]");
    c = tiny;
    c.add = "model.layers.0.self_attn.q_proj.bias";
    expect_load_refused(&c, "bias", NULL, PT_EINVAL, "model.layers.0.self_attn.q_proj.bias", "attention_bias", NULL);
    c.add = "model.layers.0.self_attn.q_norm.weight";
    expect_load_refused(&c, "qknorm", NULL, PT_EINVAL, "q_norm", "qk-norm", NULL);
    c = tiny;
    c.tied = 1;
    c.extra_json = "{\"tie_word_embeddings\": false}"; /* a tied file whose config says untied */
    expect_load_refused(&c, "notied", NULL, PT_EFORMAT, "lm_head.weight", "tie_word_embeddings", NULL);
    c = tiny;
    c.bad_index = "../elsewhere.safetensors";
    c.shards = 2;
    expect_load_refused(&c, "badindex", NULL, PT_EFORMAT, "weight_map", "model.embed_tokens.weight", NULL);
    c.bad_index = "model-00002-of-00002.safetensors"; /* names a file without the tensor */
    expect_load_refused(&c, "wrongindex", NULL, PT_EFORMAT, "model.embed_tokens.weight",
                        "model-00002-of-00002.safetensors", NULL);
    {
        pt_model_config other;
        char dir[128];
        c = tiny;
        snprintf(dir, sizeof dir, "%s/f32-untied", root);
        EXPECT_OK(pt_model_config_from_hf(dir, &other));
        other.rope_theta = 10000.0; /* the shapes agree; config.json does not */
        expect_load_refused(&c, "theta", &other, PT_EINVAL, "rope_theta", "500000", NULL);
        EXPECT_OK(pt_model_config_from_hf(dir, &other));
        other.n_head = 8; /* same qkv rows (32 + 2*16) with 8 heads of 4 on 4 kv heads */
        other.n_kv_head = 4;
        expect_load_refused(&c, "heads", &other, PT_EINVAL, "num_attention_heads", NULL, NULL);
        EXPECT_OK(pt_model_config_from_hf(dir, &other));
        other.vocab_padded = 128;
        expect_load_refused(&c, "padded", &other, PT_EFORMAT, "model.embed_tokens.weight", "vocab_padded", "[64,32]");
        /* weights missing altogether */
        snprintf(dir, sizeof dir, "%s/cfg", root);
        write_config(&tiny, dir);
        pt_model_config cfg;
        EXPECT_OK(pt_model_config_from_hf(dir, &cfg));
        pt_model *m = make_model(&cfg, 0, pt_model_n_layers(&cfg) - 1);
        EXPECT(pt_model_load_hf_safetensors(m, dir) == PT_EINVAL && strstr(pt_last_error(), "model.safetensors"));
        EXPECT(pt_model_export_hf_llama(&m, 1, "/proc/no-such-dir/x", NULL) != PT_OK);
        pt_model_destroy(m);
    }

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    be->stream_destroy(stream);
    if (failures)
        fprintf(stderr, "models.hf_llama: %d failure(s)\n", failures);
    else
        printf("models.hf_llama: ok\n");
    return failures ? 1 : 0;
}
