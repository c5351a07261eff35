/* Shared helpers of the models tests: failure counting that names the line and the last error,
 * comparing two files. */
#ifndef PT_TESTS_MODELS_COMMON_H
#define PT_TESTS_MODELS_COMMON_H

#include <stdio.h>

#include "pipetrain/status.h"

static int failures;

#define EXPECT(cond)                                                                                        \
    do {                                                                                                    \
        if (!(cond)) {                                                                                      \
            fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond,           \
                    pt_last_error());                                                                       \
            failures++;                                                                                     \
        }                                                                                                   \
    } while (0)

/* Expects `expr` to succeed; on failure prints the error and counts it. */
#define EXPECT_OK(expr)                                                                                     \
    do {                                                                                                    \
        pt_status expect_ok_s_ = (expr);                                                                    \
        if (expect_ok_s_ != PT_OK) {                                                                        \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, pt_last_error());         \
            failures++;                                                                                     \
        }                                                                                                   \
    } while (0)

/* 1 when the files at a and b both open and have the same bytes, else 0. */
__attribute__((unused)) static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

#endif
