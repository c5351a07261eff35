/* ckpt.llama: llama checkpoints resharded, bit for bit. For llama-tiny (untied lm_head), a tied
 * llama and an untied llama with the LM head in 2 vocabulary shards: weights and AdamW moments
 * saved from one chunking load into others (3 chunks -> 1 and 2, 1 -> 3, head shards in different
 * chunks), every tensor and moment identical, every copy of wte / lm_head included; each tensor is
 * stored once (the copies are not); a checkpoint of the untied model does not load into the tied
 * one (lm_head.weight is named). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"

#include "ckpt_test.h"

static const pt_backend *be;
static pt_stream *stream;
static const pt_adamw_cfg adam = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f };

typedef ckpt_test_chunks chunked;

/* Depends only on (tensor name, kind, index): every chunking, every copy, gets the same bits. */
static float value_of(const char *name, int kind, size_t i)
{
    float u = (float)(ckpt_test_hash(name, (uint64_t)(kind + 1), i) >> 40) / 16777216.0f - 0.5f;
    return kind == 2 ? u * u * 1e-4f : u * 0.05f;
}

static void make(chunked *c, const pt_model_config *cfg, int n, const int *first, const int *last)
{
    ckpt_test_chunks_make(c, cfg, &adam, n, first, last, be, stream);
}

/* Every chunk holds value_of and its optimizer is at the checkpoint's step count. */
static int matches(chunked *c, const char *what, int64_t step)
{
    if (!ckpt_test_chunks_match(c, be, stream, value_of, what))
        return 0;
    for (int i = 0; i < c->n; i++)
        if (pt_optim_steps_done(c->o[i]) != step) {
            fprintf(stderr, "%s: chunk %d optimizer at step %lld\n", what, i, (long long)pt_optim_steps_done(c->o[i]));
            return 0;
        }
    return 1;
}

static void save(const char *root, chunked *c, int64_t step)
{
    pt_ckpt_saver *sv;
    REQUIRE(pt_ckpt_saver_create(root, 0, 1, 2, &sv));
    pt_train_state ts = { .step = step, .data_step = step, .seed = 7, .run_json = "{\"model\":\"llama\"}" };
    REQUIRE(pt_ckpt_save(sv, NULL, c->m, c->o, c->n, &ts));
    REQUIRE(pt_ckpt_saver_wait(sv));
    pt_ckpt_saver_destroy(sv);
}

static pt_status load(const char *root, chunked *c)
{
    pt_train_state ts;
    pt_status st = pt_ckpt_load_ex(root, c->m, c->o, c->n, &ts, NULL, NULL, NULL);
    if (st == PT_OK)
        free((char *)ts.run_json);
    return st;
}

/* Entries of `name` (param + 2 moments = 3 when stored once) in root's latest checkpoint. */
static int stored(const char *root, int64_t step, const char *name)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/step_%06lld", root, (long long)step);
    pt_ckpt_manifest *man;
    REQUIRE(pt_ckpt_manifest_read(dir, &man));
    int n = 0;
    for (int i = 0; i < man->n_entries; i++)
        n += strcmp(man->entries[i].name, name) == 0;
    pt_ckpt_manifest_destroy(man);
    return n;
}

/* One config through the chunkings; `three` cuts its layers into 3 chunks, `two` into 2. */
static void reshard(const pt_model_config *cfg, const int *f3, const int *l3, const int *f2, const int *l2,
                    const char *tag)
{
    char root[] = "/tmp/pt_ckpt_llama_XXXXXX";
    if (!mkdtemp(root))
        exit(1);
    const int L = pt_model_n_layers(cfg) - 1;
    chunked three, one, two;
    make(&three, cfg, 3, f3, l3);
    ckpt_test_chunks_fill(&three, be, stream, value_of, 5);
    save(root, &three, 10);
    CHECK(stored(root, 10, "wte.weight") == 3, "%s: wte.weight stored %d times, want 3 (param + moments once)", tag,
          stored(root, 10, "wte.weight"));
    if (!pt_model_tied(cfg))
        CHECK(stored(root, 10, "lm_head.weight") == 3, "%s: lm_head.weight stored %d times, want 3", tag,
              stored(root, 10, "lm_head.weight"));
    else
        CHECK(stored(root, 10, "lm_head.weight") == 0, "%s: a tied model stored lm_head.weight", tag);
    make(&one, cfg, 1, (int[]){ 0 }, (int[]){ L });
    CHECK(load(root, &one) == PT_OK && matches(&one, tag, 10), "%s: 3 chunks -> 1: %s", tag, pt_last_error());
    make(&two, cfg, 2, f2, l2);
    CHECK(load(root, &two) == PT_OK && matches(&two, tag, 10), "%s: 3 chunks -> 2: %s", tag, pt_last_error());
    ckpt_test_chunks_zero(&three, be, stream);
    save(root, &one, 20);
    CHECK(load(root, &three) == PT_OK && matches(&three, tag, 20), "%s: 1 chunk -> 3: %s", tag, pt_last_error());
    /* the other head: an untied checkpoint into a tied model and back names lm_head.weight */
    pt_model_config other = *cfg;
    other.tie_word_embeddings = !cfg->tie_word_embeddings;
    chunked o;
    make(&o, &other, 1, (int[]){ 0 }, (int[]){ pt_model_n_layers(&other) - 1 });
    pt_status st = load(root, &o);
    if (!pt_model_tied(cfg))
        CHECK(st == PT_OK, "%s: an untied checkpoint loads into the tied model (lm_head is extra): %s", tag,
              pt_last_error());
    else
        CHECK(st != PT_OK && strstr(pt_last_error(), "lm_head.weight"), "%s: tied -> untied: %s", tag,
              pt_last_error());
    ckpt_test_chunks_destroy(&o);
    ckpt_test_chunks_destroy(&three);
    ckpt_test_chunks_destroy(&one);
    ckpt_test_chunks_destroy(&two);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

int main(void)
{
    REQUIRE(pt_backend_get("cpu", &be));
    REQUIRE(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &stream));
    pt_model_config cfg;
    REQUIRE(pt_model_config_load("llama-tiny", &cfg)); /* 6 blocks: layers 0..7, untied */
    CHECK(!pt_model_tied(&cfg), "llama-tiny should be untied");
    reshard(&cfg, (int[]){ 0, 2, 5 }, (int[]){ 1, 4, 7 }, (int[]){ 0, 4 }, (int[]){ 3, 7 }, "llama-tiny");
    pt_model_config tied = cfg;
    tied.tie_word_embeddings = 1;
    snprintf(tied.name, sizeof tied.name, "llama-tiny-tied");
    reshard(&tied, (int[]){ 0, 3, 6 }, (int[]){ 2, 5, 7 }, (int[]){ 0, 1 }, (int[]){ 0, 7 }, "tied");
    /* untied, the head in 2 shards (layers 7 and 8) held by different chunks: both keep lm_head */
    pt_model_config split = cfg;
    split.head_split = 2;
    snprintf(split.name, sizeof split.name, "llama-tiny-split");
    reshard(&split, (int[]){ 0, 3, 8 }, (int[]){ 2, 7, 8 }, (int[]){ 0, 5 }, (int[]){ 4, 8 }, "split head");
    be->stream_destroy(stream);
    if (failures)
        fprintf(stderr, "ckpt.llama: %d failure(s)\n", failures);
    else
        printf("ckpt.llama: ok\n");
    return failures ? 1 : 0;
}
