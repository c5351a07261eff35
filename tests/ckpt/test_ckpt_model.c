/* ckpt.model: saving and loading real models and optimizer state through the saver.
 *  - model + AdamW moments + step count round-trip bit-exact (asynchronous saver, keep-K)
 *  - reshard: saved from gpt2-tiny split in 3 chunks, loaded into 1 and into 2 chunks: every
 *    tensor (both tied wte copies included) and every moment bit-identical
 *  - a checkpoint of another shape, or without optimizer state, is a one-line error naming the
 *    tensor; a second save while one is writing waits and says so
 */
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
static pt_model_config cfg;
static const pt_adamw_cfg adam = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                                   .grad_clip = 1.0f };

typedef ckpt_test_chunks chunked;

static void make(chunked *c, int n, const int *first, const int *last)
{
    ckpt_test_chunks_make(c, &cfg, &adam, n, first, last, be, stream);
}

/* A value that depends only on (tensor name, kind, index): every chunking gets the same numbers,
 * tied copies included. Includes awkward bit patterns (-0, denormals) among N(0, 0.02)-like values. */
static float value_of(const char *name, int kind, size_t i)
{
    uint64_t h = ckpt_test_hash(name, (uint64_t)kind, i);
    if (i % 97 == 5)
        return -0.0f;
    if (i % 89 == 7) {
        uint32_t d = (uint32_t)(h & 0x7fffff) | 1;
        float f;
        memcpy(&f, &d, 4);
        return f;
    }
    float u = (float)(h >> 40) / 16777216.0f - 0.5f;
    return kind == 2 ? u * u * 1e-4f : u * 0.05f;
}

/* 1 when every tensor of every chunk of c holds value_of (bit-exact), else 0 (prints the first miss). */
static int matches(chunked *c, const char *what) { return ckpt_test_chunks_match(c, be, stream, value_of, what); }

static pt_status load(const char *dir, chunked *c, pt_train_state *ts, pt_ckpt_load_info *li)
{
    return pt_ckpt_load_ex(dir, c->m, c->o, c->n, ts, NULL, NULL, li);
}

int main(void)
{
    REQUIRE(pt_backend_get("cpu", &be));
    REQUIRE(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &stream));
    REQUIRE(pt_model_config_load("gpt2-tiny", &cfg));
    char root[] = "/tmp/pt_ckpt_model_XXXXXX";
    if (!mkdtemp(root))
        return 1;
    const int L = pt_model_n_layers(&cfg) - 1; /* last layer index: 5 for gpt2-tiny */

    /* --- save from 3 chunks (embedding+1 block | 2 blocks | 1 block+head), twice --- */
    chunked three;
    make(&three, 3, (int[]){ 0, 2, 4 }, (int[]){ 1, 3, L });
    ckpt_test_chunks_fill(&three, be, stream, value_of, 3);
    pt_ckpt_saver *sv;
    REQUIRE(pt_ckpt_saver_create(root, 2, 1, 2, &sv));
    /* the staging buffer reserved up front; the saves below then copy into it */
    CHECK(pt_ckpt_saver_reserve(sv, NULL, NULL, 1) == PT_EINVAL, "reserve without models");
    REQUIRE(pt_ckpt_saver_reserve(sv, three.m, three.o, three.n));
    const char *run = "{\"model\":\"gpt2-tiny\",\"schedule\":\"1f1b\"}";
    for (int64_t step = 10; step <= 30; step += 10) {
        pt_train_state ts = { .step = step, .data_step = step + 1, .seed = 42, .run_json = run };
        REQUIRE(pt_ckpt_save(sv, NULL, three.m, three.o, three.n, &ts));
        pt_ckpt_save_info info;
        pt_ckpt_saver_info(sv, &info);
        CHECK(info.step == step, "info.step %lld", (long long)info.step);
        CHECK(info.waited_for_step == -1 || info.waited_for_step == step - 10, "waited for %lld",
              (long long)info.waited_for_step);
    }
    REQUIRE(pt_ckpt_saver_wait(sv));
    pt_ckpt_save_info info;
    pt_ckpt_saver_info(sv, &info);
    CHECK(info.done && info.status == PT_OK && strstr(info.step_dir, "step_000030"), "last save: %s", info.step_dir);
    CHECK(info.raw_bytes > 0 && info.stored_bytes > 0 && info.stored_bytes < info.raw_bytes + 4096,
          "sizes raw %llu stored %llu", (unsigned long long)info.raw_bytes, (unsigned long long)info.stored_bytes);
    int64_t *steps;
    int n_steps;
    REQUIRE(pt_ckpt_list(root, &steps, &n_steps));
    CHECK(n_steps == 2 && steps[0] == 20 && steps[1] == 30, "keep_last 2: %d checkpoints", n_steps);
    free(steps);
    /* the tied wte is stored once */
    pt_ckpt_manifest *man;
    REQUIRE(pt_ckpt_manifest_read(info.step_dir, &man));
    int n_wte = 0;
    for (int i = 0; i < man->n_entries; i++)
        n_wte += strcmp(man->entries[i].name, "wte.weight") == 0;
    CHECK(n_wte == 3, "wte.weight stored %d times (want param, adam_m, adam_v once each)", n_wte);
    pt_ckpt_manifest_destroy(man);

    /* --- load into 1 chunk --- */
    chunked one;
    make(&one, 1, (int[]){ 0 }, (int[]){ L });
    pt_train_state ts;
    pt_ckpt_load_info li;
    CHECK(load(root, &one, &ts, &li) == PT_OK, "load into 1 chunk: %s", pt_last_error());
    CHECK(matches(&one, "1 chunk"), "1 chunk differs");
    CHECK(ts.step == 30 && ts.data_step == 31 && ts.seed == 42 && pt_optim_steps_done(one.o[0]) == 30,
          "train state: step %lld data %lld seed %llu", (long long)ts.step, (long long)ts.data_step,
          (unsigned long long)ts.seed);
    CHECK(ts.run_json && strstr(ts.run_json, "1f1b"), "run json: %s", ts.run_json ? ts.run_json : "(null)");
    CHECK(li.note[0] == 0 && strstr(li.step_dir, "step_000030"), "load info: %s / %s", li.step_dir, li.note);
    free((char *)ts.run_json);

    /* --- load into 2 chunks (both hold a wte.weight) --- */
    chunked two;
    make(&two, 2, (int[]){ 0, 3 }, (int[]){ 2, L });
    CHECK(load(root, &two, &ts, NULL) == PT_OK, "load into 2 chunks: %s", pt_last_error());
    CHECK(matches(&two, "2 chunks"), "2 chunks differ");
    free((char *)ts.run_json);

    /* --- 1 chunk -> save -> 3 chunks, and an older step by its directory --- */
    ckpt_test_chunks_zero(&three, be, stream);
    REQUIRE(pt_ckpt_save(sv, NULL, one.m, one.o, 1, &(pt_train_state){ .step = 40, .run_json = run }));
    REQUIRE(pt_ckpt_saver_wait(sv));
    CHECK(load(root, &three, &ts, NULL) == PT_OK && matches(&three, "3 chunks from 1"), "3 chunks from 1: %s",
          pt_last_error());
    free((char *)ts.run_json);
    char dir20[600];
    snprintf(dir20, sizeof dir20, "%s/step_000020", root);
    /* step 20 is gone (keep 2): 30 and 40 remain */
    CHECK(load(dir20, &one, &ts, NULL) != PT_OK, "step 20 should have been pruned");

    /* --- weights only, loaded with optimizers: error naming the tensor --- */
    REQUIRE(pt_ckpt_save(sv, NULL, one.m, NULL, 1, &(pt_train_state){ .step = 50 }));
    REQUIRE(pt_ckpt_saver_wait(sv));
    CHECK(load(root, &one, &ts, NULL) == PT_EFORMAT && strstr(pt_last_error(), "adam_m") &&
              strstr(pt_last_error(), "wte.weight"),
          "weights-only: %s", pt_last_error());
    CHECK(pt_ckpt_load(root, one.m, NULL, 1, &ts) == PT_OK, "weights-only load: %s", pt_last_error());
    free((char *)ts.run_json);

    /* --- a run description that is not a JSON object is refused before anything is written --- */
    CHECK(pt_ckpt_save(sv, NULL, one.m, NULL, 1, &(pt_train_state){ .step = 60, .run_json = "[1]" }) == PT_EINVAL,
          "a non-object run JSON must be refused");

    /* --- another shape: error naming tensor and shapes --- */
    pt_model_config wide = cfg;
    wide.n_embd = 64;
    wide.n_head = 2;
    pt_model_config saved = cfg;
    cfg = wide;
    chunked other;
    make(&other, 1, (int[]){ 0 }, (int[]){ L });
    cfg = saved;
    CHECK(load(root, &other, &ts, NULL) == PT_EFORMAT && strstr(pt_last_error(), "wte.weight") &&
              strstr(pt_last_error(), "[256,128]") && strstr(pt_last_error(), "[256,64]"),
          "shape mismatch: %s", pt_last_error());
    ckpt_test_chunks_destroy(&other);

    pt_ckpt_saver_destroy(sv);
    ckpt_test_chunks_destroy(&one);
    ckpt_test_chunks_destroy(&two);
    ckpt_test_chunks_destroy(&three);
    be->stream_destroy(stream);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", root);
    if (failures) {
        fprintf(stderr, "ckpt.model: %d failure(s)\n", failures);
        return 1;
    }
    printf("ckpt.model: ok\n");
    return 0;
}
