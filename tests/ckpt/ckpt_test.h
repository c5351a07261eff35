/* tests/ckpt/ckpt_test.h — what the checkpoint tests share: CHECK and REQUIRE, reading a whole
 * file, the values of the seed corpus (make_corpus.c writes them and ckpt.compat checks them
 * against the stored files: one generator, so the two cannot drift apart), and for the tests of
 * real models (ckpt.model, ckpt.llama, ckpt.multirank) filling and checking a chunk's weights and
 * AdamW moments with values that depend only on (tensor name, kind, index). Test code, header only. */
#ifndef PT_TESTS_CKPT_TEST_H
#define PT_TESTS_CKPT_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/backend.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"
#include "pipetrain/status.h"

/* Failed CHECKs so far; main returns non-zero when there were any. */
__attribute__((unused)) static int failures;
#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fprintf(stderr, "\n");                                                           \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* expr (a pt_status) must be PT_OK, else the test stops (exit 1) naming it and the error. */
#define REQUIRE(expr)                                                                        \
    do {                                                                                     \
        if ((expr) != PT_OK) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, pt_last_error());  \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

/* The whole file at path, malloc'd with one spare byte, its length in *len; NULL when it cannot
 * be read. */
static inline uint8_t *ckpt_test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n > 0 ? (size_t)n : 0;
    return buf;
}

/* The seed corpus's three tensors: a, 300 small normal-ish floats (an LCG from seed 7); b, 0..4;
 * h, 200 bf16 bit patterns. */
static inline void ckpt_test_corpus_values(float a[300], float b[5], uint16_t h[200])
{
    uint32_t x = 7;
    for (int i = 0; i < 300; i++) {
        x = x * 1664525u + 1013904223u;
        a[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.04f;
    }
    for (int i = 0; i < 5; i++)
        b[i] = (float)i;
    for (int i = 0; i < 200; i++)
        h[i] = (uint16_t)(0x3c00 + (i * 37) % 512);
}

/* The format-3 seed's four sources (from the corpus values): blocks.0.attn.qkv.weight's param as
 * two pieces [0, 120) and [120, 300) of its 3x100, lnf.bias whole, and wte.weight's adam_m (bf16
 * 20x10) as the piece [50, 200) only (its [0, 50) is missing). */
static inline void ckpt_test_corpus_pieces(const float a[300], const float b[5], const uint16_t h[200], pt_ckpt_src src[4])
{
    memset(src, 0, 4 * sizeof *src);
    src[0] = (pt_ckpt_src){ "blocks.0.attn.qkv.weight", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 3, 100 }, a, 0, 120 };
    src[1] = (pt_ckpt_src){ "blocks.0.attn.qkv.weight", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 3, 100 }, a + 120, 120, 300 };
    src[2] = (pt_ckpt_src){ "lnf.bias", PT_CKPT_ADAM_V, PT_CKPT_F32, 1, { 5 }, b, 0, 0 };
    src[3] = (pt_ckpt_src){ "wte.weight", PT_CKPT_ADAM_M, PT_CKPT_BF16, 2, { 20, 10 }, h + 50, 50, 200 };
}

/* The format-4 seed's three sources: blocks.0.attn.proj.weight (10 x 30) as two boxes, columns
 * [0, 12) (a[0, 120)) and values [30, 180) of columns [12, 30) (a[120, 270); its first 30 values,
 * row 0 and the start of row 1, are missing), and lnf.bias whole. */
static inline void ckpt_test_corpus_boxes(const float a[300], const float b[5], pt_ckpt_src src[3])
{
    memset(src, 0, 3 * sizeof *src);
    src[0] = (pt_ckpt_src){ "blocks.0.attn.proj.weight", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 10, 30 }, a, 0, 0,
                            { 0, 10, 0, 12 } };
    src[1] = (pt_ckpt_src){ "blocks.0.attn.proj.weight", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 10, 30 }, a + 120, 30, 180,
                            { 0, 10, 12, 30 } };
    src[2] = (pt_ckpt_src){ "lnf.bias", PT_CKPT_PARAM, PT_CKPT_F32, 1, { 5 }, b, 0, 0, { 0, 0, 0, 0 } };
}

/* ---- chunks of real models ---- */

/* The value a test stores at element i of tensor `name`: kind 0 the weights, 1 AdamW's first
 * moment, 2 its second. */
typedef float (*ckpt_test_value_fn)(const char *name, int kind, size_t i);

/* A 64-bit hash of (name, seed, i) (FNV-1a of the name from seed, then a splitmix-style mix of i):
 * the bits each test's value function draws from. */
static inline uint64_t ckpt_test_hash(const char *name, uint64_t seed, size_t i)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h ^= i * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    return h;
}

/* m's weights and o's two moments, every named tensor (tied copies included), set to value. */
static inline void ckpt_test_fill(pt_model *m, pt_optim *o, const pt_backend *be, pt_stream *s,
                                  ckpt_test_value_fn value)
{
    float *bufs[3] = { pt_model_params(m), pt_optim_m(o), pt_optim_v(o) };
    for (int t = 0; t < pt_model_n_tensors(m); t++) {
        const pt_param *p = pt_model_tensor(m, t);
        float *host = malloc(p->numel * sizeof(float));
        for (int k = 0; k < 3; k++) {
            for (size_t j = 0; j < p->numel; j++)
                host[j] = value(p->name, k, j);
            REQUIRE(be->memcpy_h2d(s, bufs[k] + p->offset, host, p->numel * sizeof(float)));
        }
        free(host);
    }
    REQUIRE(be->stream_sync(s));
}

/* 1 when m's weights and o's moments hold value bit for bit, else 0, printing the first miss as
 * "what: chunk `chunk` TENSOR kind K [J]: GOT, want WANT". */
static inline int ckpt_test_matches(pt_model *m, pt_optim *o, const pt_backend *be, pt_stream *s,
                                    ckpt_test_value_fn value, const char *what, int chunk)
{
    float *bufs[3] = { pt_model_params(m), pt_optim_m(o), pt_optim_v(o) };
    for (int t = 0; t < pt_model_n_tensors(m); t++) {
        const pt_param *p = pt_model_tensor(m, t);
        float *host = malloc(p->numel * sizeof(float));
        for (int k = 0; k < 3; k++) {
            REQUIRE(be->memcpy_d2h(s, host, bufs[k] + p->offset, p->numel * sizeof(float)));
            for (size_t j = 0; j < p->numel; j++) {
                float want = value(p->name, k, j);
                if (memcmp(&host[j], &want, 4) != 0) {
                    fprintf(stderr, "%s: chunk %d %s kind %d [%zu]: %a, want %a\n", what, chunk, p->name, k, j,
                            host[j], want);
                    free(host);
                    return 0;
                }
            }
        }
        free(host);
    }
    return 1;
}

/* A model cut into chunks (pt_model + AdamW per chunk), on one backend stream. */
typedef struct ckpt_test_chunks {
    int n;
    pt_model *m[4];
    pt_optim *o[4];
} ckpt_test_chunks;

/* n chunks of cfg, chunk i holding layers first[i]..last[i] (micro batch 1, 8 tokens). */
static inline void ckpt_test_chunks_make(ckpt_test_chunks *c, const pt_model_config *cfg, const pt_adamw_cfg *adam,
                                         int n, const int *first, const int *last, const pt_backend *be,
                                         pt_stream *s)
{
    pt_model_opts mo = { .micro_batch = 1, .seq_len = 8, .n_slots = 1, .recompute = 0 };
    c->n = n;
    for (int i = 0; i < n; i++) {
        REQUIRE(pt_model_create(cfg, first[i], last[i], &mo, be, s, &c->m[i]));
        REQUIRE(pt_optim_create(c->m[i], adam, &c->o[i]));
    }
}

static inline void ckpt_test_chunks_destroy(ckpt_test_chunks *c)
{
    for (int i = 0; i < c->n; i++) {
        pt_optim_destroy(c->o[i]);
        pt_model_destroy(c->m[i]);
    }
    c->n = 0;
}

/* Every chunk filled with value (ckpt_test_fill), its optimizer at `steps` steps done. */
static inline void ckpt_test_chunks_fill(ckpt_test_chunks *c, const pt_backend *be, pt_stream *s,
                                         ckpt_test_value_fn value, int64_t steps)
{
    for (int i = 0; i < c->n; i++) {
        ckpt_test_fill(c->m[i], c->o[i], be, s, value);
        pt_optim_set_steps_done(c->o[i], steps);
    }
}

/* 1 when every chunk matches value (ckpt_test_matches), else 0. */
static inline int ckpt_test_chunks_match(ckpt_test_chunks *c, const pt_backend *be, pt_stream *s,
                                         ckpt_test_value_fn value, const char *what)
{
    for (int i = 0; i < c->n; i++)
        if (!ckpt_test_matches(c->m[i], c->o[i], be, s, value, what, i))
            return 0;
    return 1;
}

/* Every chunk's weights and moments zeroed, its optimizer at step 0. */
static inline void ckpt_test_chunks_zero(ckpt_test_chunks *c, const pt_backend *be, pt_stream *s)
{
    for (int i = 0; i < c->n; i++) {
        size_t bytes = pt_model_n_params(c->m[i]) * sizeof(float);
        REQUIRE(be->memset_zero(s, pt_model_params(c->m[i]), bytes));
        REQUIRE(be->memset_zero(s, pt_optim_m(c->o[i]), bytes));
        REQUIRE(be->memset_zero(s, pt_optim_v(c->o[i]), bytes));
        pt_optim_set_steps_done(c->o[i], 0);
    }
    REQUIRE(be->stream_sync(s));
}

#endif
