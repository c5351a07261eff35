/* Model configs: presets and their parameter counts, JSON configs, and every bad config refused
 * with an error naming the field. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pipetrain/model.h"
#include "test_common.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        failures++;
        return;
    }
    fputs(text, f);
    fclose(f);
}

/* Loading `json` fails with PT_EINVAL and an error that mentions `needle`. */
static void expect_bad(const char *json, const char *needle)
{
    write_file("bad_config.json", json);
    pt_model_config c;
    pt_status st = pt_model_config_load("bad_config.json", &c);
    if (st == PT_OK || !strstr(pt_last_error(), needle)) {
        fprintf(stderr, "config %s: expected an error naming \"%s\", got status %d: %s\n", json, needle, (int)st,
                pt_last_error());
        failures++;
    }
}

int main(void)
{
    static const struct {
        const char *name;
        int64_t n_params;
        int n_layer, vocab_padded;
    } presets[] = {
        { "gpt2", 124439808, 12, 50304 },          { "gpt2-medium", 354823168, 24, 50304 },
        { "gpt2-large", 774030080, 36, 50304 },    { "gpt2-xl", 1557611200, 48, 50304 },
        { "gpt2-tiny", 858880, 4, 256 },           { "gpt2-small", 30339456, 6, 50304 },
        { "gpt3-175b", 174604259328LL, 96, 50304 },
        /* Llama: the parameter counts Meta and Hugging Face publish for these configs */
        { "llama3.2-1b", 1235814400LL, 16, 128256 },  { "llama3.2-3b", 3212749824LL, 28, 128256 },
        { "llama3-8b", 8030261248LL, 32, 128256 },    { "llama3-70b", 70553706496LL, 80, 128256 },
        { "llama3-405b", 405853388800LL, 126, 128256 }, { "llama-small", 100092672LL, 12, 32000 },
        { "llama-tiny", 1173120LL, 6, 256 },
    };
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++) {
        pt_model_config c;
        EXPECT_OK(pt_model_config_load(presets[i].name, &c));
        EXPECT(strcmp(c.name, presets[i].name) == 0);
        EXPECT(c.n_layer == presets[i].n_layer && c.vocab_padded == presets[i].vocab_padded);
        EXPECT(pt_model_config_validate(&c) == PT_OK);
        EXPECT(pt_model_config_n_params(&c) == presets[i].n_params);
    }
    pt_model_config tiny;
    EXPECT_OK(pt_model_config_load("gpt2-tiny", &tiny));
    EXPECT(tiny.n_head == 4 && tiny.n_embd == 128 && tiny.vocab_size == 256 && tiny.max_seq_len == 256);
    int n_names = 0;
    for (const char *const *p = pt_model_preset_names(); *p; p++) {
        pt_model_config c;
        EXPECT_OK(pt_model_config_load(*p, &c));
        n_names++;
    }
    EXPECT(n_names == 17);
    pt_model_config g3;
    EXPECT_OK(pt_model_config_load("gpt3-175b", &g3));
    EXPECT(g3.max_seq_len == 2048 && g3.n_layer == 96 && g3.n_embd == 12288);

    /* A JSON config, with vocab_padded defaulting to vocab_size. */
    write_file("good_config.json",
               "{\"name\": \"mini\", \"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, \"vocab_size\": 100, "
               "\"max_seq_len\": 32}");
    pt_model_config c;
    EXPECT_OK(pt_model_config_load("good_config.json", &c));
    EXPECT(strcmp(c.name, "mini") == 0 && c.n_layer == 2 && c.n_head == 4 && c.n_embd == 64 &&
           c.vocab_size == 100 && c.vocab_padded == 100 && c.max_seq_len == 32);
    EXPECT(pt_model_config_n_params(&c) == 100 * 64 + 32 * 64 + 2 * (12 * 64 * 64 + 13 * 64) + 2 * 64);
    write_file("good_config.json", "{\"n_layer\": 1, \"n_head\": 1, \"n_embd\": 8, \"vocab_size\": 10, "
                                   "\"vocab_padded\": 16, \"max_seq_len\": 4}");
    EXPECT_OK(pt_model_config_load("good_config.json", &c));
    EXPECT(c.vocab_padded == 16 && c.name[0] == '\0');

    /* Bad configs, each named. */
    const char *base_tail = "\"vocab_size\": 100, \"max_seq_len\": 32}";
    char buf[512];
    snprintf(buf, sizeof(buf), "{\"n_layer\": 2, \"n_head\": 5, \"n_embd\": 64, %s", base_tail);
    expect_bad(buf, "n_head 5 does not divide n_embd 64");
    snprintf(buf, sizeof(buf), "{\"n_layer\": 0, \"n_head\": 4, \"n_embd\": 64, %s", base_tail);
    expect_bad(buf, "n_layer");
    snprintf(buf, sizeof(buf), "{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, \"dropout\": 0.1, %s", base_tail);
    expect_bad(buf, "dropout");
    snprintf(buf, sizeof(buf), "{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64000000, %s", base_tail);
    expect_bad(buf, "n_embd");
    snprintf(buf, sizeof(buf), "{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64.5, %s", base_tail);
    expect_bad(buf, "n_embd");
    snprintf(buf, sizeof(buf), "{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, \"vocab_padded\": 50, %s",
             base_tail);
    expect_bad(buf, "vocab_padded");
    expect_bad("{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, \"vocab_size\": 100}", "max_seq_len");
    expect_bad("{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, \"vocab_size\": 100, \"max_seq_len\": 0}",
               "max_seq_len");
    expect_bad("{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 64, \"vocab_size\": 1e12, \"max_seq_len\": 8}",
               "vocab_size");
    expect_bad("{\"n_layer\": \"two\", \"n_head\": 4}", "n_layer");
    expect_bad("[1, 2]", "JSON object");
    expect_bad("{\"n_layer\": 2,", "bad_config.json");
    EXPECT(pt_model_config_load("gpt5-huge", &c) == PT_EINVAL);
    EXPECT(strstr(pt_last_error(), "gpt5-huge") && strstr(pt_last_error(), "gpt2-tiny"));
    EXPECT(pt_model_config_load("", &c) == PT_EINVAL);

    /* validate() directly */
    pt_model_config v = tiny;
    v.n_head = 3;
    EXPECT(pt_model_config_validate(&v) == PT_EINVAL && strstr(pt_last_error(), "n_head"));
    v = tiny;
    v.vocab_padded = 100;
    EXPECT(pt_model_config_validate(&v) == PT_EINVAL && strstr(pt_last_error(), "vocab_padded"));
    remove("bad_config.json");
    remove("good_config.json");
    /* config objects: to_json then from_json gives the config back; a field of the wrong type is named */
    {
        pt_model_config a, b;
        EXPECT_OK(pt_model_config_load("gpt2-small", &a));
        cJSON *j = pt_model_config_to_json(&a);
        EXPECT(j != NULL);
        EXPECT_OK(pt_model_config_from_json(j, "round trip", &b));
        EXPECT(memcmp(&a, &b, sizeof a) == 0);
        cJSON_ReplaceItemInObject(j, "n_head", cJSON_CreateString("six"));
        EXPECT(pt_model_config_from_json(j, "run.json", &b) == PT_EINVAL);
        EXPECT(strstr(pt_last_error(), "run.json") && strstr(pt_last_error(), "n_head"));
        cJSON_Delete(j);
    }
    /* llama configs: fields, defaults, round trip, refusals with the fix */
    {
        pt_model_config l, r;
        EXPECT_OK(pt_model_config_load("llama3-405b", &l));
        EXPECT(l.arch == PT_ARCH_LLAMA && pt_model_kv_heads(&l) == 8 && l.intermediate_size == 53248 &&
               l.rope_theta == 500000.0 && !pt_model_tied(&l) && l.rope_scaling_factor == 8.0 &&
               l.rope_original_max_pos == 8192);
        cJSON *j = pt_model_config_to_json(&l);
        EXPECT(j != NULL);
        EXPECT_OK(pt_model_config_from_json(j, "round trip", &r));
        EXPECT(memcmp(&l, &r, sizeof l) == 0);
        cJSON_Delete(j);
        EXPECT_OK(pt_model_config_load("llama3.2-1b", &l));
        EXPECT(pt_model_tied(&l) && l.rope_scaling_factor == 32.0);
        write_file("good_config.json", "{\"architecture\": \"llama\", \"n_layer\": 2, \"n_head\": 4, \"n_embd\": 32, "
                                       "\"vocab_size\": 64, \"max_seq_len\": 16, \"intermediate_size\": 48}");
        EXPECT_OK(pt_model_config_load("good_config.json", &l));
        EXPECT(pt_model_kv_heads(&l) == 4 && l.rms_norm_eps == 1e-5f && l.rope_theta == 10000.0 && !pt_model_tied(&l));
        const char *lt = "\"vocab_size\": 64, \"max_seq_len\": 16, \"intermediate_size\": 48";
        snprintf(buf, sizeof(buf), "{\"architecture\": \"llama\", \"n_layer\": 2, \"n_head\": 4, \"n_kv_head\": 3, "
                 "\"n_embd\": 32, %s}", lt);
        expect_bad(buf, "not a multiple of n_kv_head 3");
        snprintf(buf, sizeof(buf), "{\"architecture\": \"llama\", \"n_layer\": 2, \"n_head\": 4, \"n_embd\": 36, %s}",
                 lt);
        expect_bad(buf, "is odd");
        snprintf(buf, sizeof(buf), "{\"architecture\": \"mamba\", \"n_layer\": 2, \"n_head\": 4, \"n_embd\": 32, %s}",
                 lt);
        expect_bad(buf, "mamba");
        snprintf(buf, sizeof(buf), "{\"n_layer\": 2, \"n_head\": 4, \"n_embd\": 32, %s}", lt);
        expect_bad(buf, "llama field");
        snprintf(buf, sizeof(buf), "{\"architecture\": \"llama\", \"n_layer\": 2, \"n_head\": 4, \"n_embd\": 32, "
                 "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}, %s}", lt);
        expect_bad(buf, "yarn");
        remove("good_config.json");
        remove("bad_config.json");
    }
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
