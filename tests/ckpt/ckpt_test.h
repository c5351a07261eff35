/* tests/ckpt/ckpt_test.h — what the checkpoint tests share: CHECK, reading a whole file, and the
 * values of the seed corpus (make_corpus.c writes them and ckpt.compat checks them against the
 * stored files: one generator, so the two cannot drift apart). Test code, header only. */
#ifndef PT_TESTS_CKPT_TEST_H
#define PT_TESTS_CKPT_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
