/* safetensors: write then read back (F32, BF16, I32, metadata, a scalar, pieces), half-float
 * conversions, and corrupt files each refused with a clear error instead of a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/safetensors.h"
#include "test_common.h"

/* Writes a raw safetensors file: header length, header text, `data_bytes` bytes of data. */
static void write_raw(const char *path, const char *header, uint64_t claimed_len, size_t data_bytes)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        failures++;
        return;
    }
    uint64_t len = claimed_len ? claimed_len : strlen(header);
    unsigned char lb[8];
    for (int i = 0; i < 8; i++)
        lb[i] = (unsigned char)(len >> (8 * i));
    fwrite(lb, 1, 8, f);
    fputs(header, f);
    for (size_t i = 0; i < data_bytes; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
}

static void expect_corrupt(const char *header, uint64_t claimed_len, size_t data_bytes, const char *needle)
{
    write_raw("corrupt.safetensors", header, claimed_len, data_bytes);
    pt_safetensors *f = NULL;
    pt_status st = pt_safetensors_open("corrupt.safetensors", &f);
    if (st != PT_EFORMAT || f != NULL || !strstr(pt_last_error(), needle)) {
        fprintf(stderr, "header %s: expected PT_EFORMAT mentioning \"%s\", got %d: %s\n", header, needle, (int)st,
                pt_last_error());
        failures++;
    }
    pt_safetensors_close(f);
}

int main(void)
{
    /* conversions */
    EXPECT(pt_f16_to_f32(0x3c00) == 1.0f && pt_f16_to_f32(0xc000) == -2.0f && pt_f16_to_f32(0x0000) == 0.0f);
    EXPECT(pt_f16_to_f32(0x7bff) == 65504.0f && pt_f16_to_f32(0x0001) == 5.9604644775390625e-8f);
    EXPECT(pt_f16_to_f32(0x3555) == 0.333251953125f);
    EXPECT(pt_bf16_to_f32(0x3f80) == 1.0f && pt_f32_to_bf16(1.0f) == 0x3f80);
    EXPECT(pt_f32_to_bf16(1.00390625f) == 0x3f80);   /* tie -> even */
    EXPECT(pt_f32_to_bf16(1.01171875f) == 0x3f82);   /* tie -> even (up) */
    EXPECT(pt_bf16_to_f32(pt_f32_to_bf16(-3.5f)) == -3.5f);

    /* round trip */
    enum { R = 3, K = 5 };
    float a[R * K];
    uint16_t h[4];
    int32_t ids[6] = { 0, 1, -1, 7, 255, 1 << 20 };
    for (int i = 0; i < R * K; i++)
        a[i] = 0.25f * (float)i - 1.0f;
    for (int i = 0; i < 4; i++)
        h[i] = pt_f32_to_bf16((float)i + 0.5f);
    float scalar = 42.0f;
    pt_safetensors_writer *w = NULL;
    EXPECT_OK(pt_safetensors_writer_create("rt.safetensors", &w));
    if (!w)
        return 1;
    EXPECT_OK(pt_safetensors_writer_set_metadata(w, "format", "pt"));
    EXPECT_OK(pt_safetensors_writer_set_metadata(w, "n_layer", "2"));
    int64_t s_a[2] = { R, K }, s_h[1] = { 4 }, s_ids[2] = { 2, 3 };
    EXPECT_OK(pt_safetensors_writer_declare(w, "a", PT_ST_F32, 2, s_a));
    EXPECT_OK(pt_safetensors_writer_declare(w, "h", PT_ST_BF16, 1, s_h));
    EXPECT_OK(pt_safetensors_writer_declare(w, "ids", PT_ST_I32, 2, s_ids));
    EXPECT_OK(pt_safetensors_writer_declare(w, "s", PT_ST_F32, 0, NULL));
    EXPECT(pt_safetensors_writer_declare(w, "a", PT_ST_F32, 2, s_a) == PT_EINVAL); /* twice */
    EXPECT_OK(pt_safetensors_writer_write(w, a, 7 * sizeof(float)));               /* in pieces */
    EXPECT_OK(pt_safetensors_writer_write(w, a + 7, (R * K - 7) * sizeof(float)));
    EXPECT(pt_safetensors_writer_declare(w, "late", PT_ST_F32, 1, s_h) == PT_EINVAL);
    EXPECT_OK(pt_safetensors_writer_write(w, h, sizeof(h)));
    EXPECT_OK(pt_safetensors_writer_write(w, ids, sizeof(ids)));
    EXPECT(pt_safetensors_writer_finish(w) == PT_EINVAL); /* scalar missing */
    EXPECT_OK(pt_safetensors_writer_write(w, &scalar, sizeof(scalar)));
    EXPECT_OK(pt_safetensors_writer_finish(w));
    pt_safetensors_writer_destroy(w);

    pt_safetensors *f = NULL;
    EXPECT_OK(pt_safetensors_open("rt.safetensors", &f));
    if (!f)
        return 1;
    EXPECT(pt_safetensors_n_tensors(f) == 4);
    EXPECT(pt_safetensors_metadata(f, "format") && strcmp(pt_safetensors_metadata(f, "format"), "pt") == 0);
    EXPECT(pt_safetensors_metadata(f, "n_layer") && strcmp(pt_safetensors_metadata(f, "n_layer"), "2") == 0);
    EXPECT(pt_safetensors_metadata(f, "missing") == NULL);
    const pt_safetensors_tensor *ta = pt_safetensors_find(f, "a"), *th = pt_safetensors_find(f, "h");
    const pt_safetensors_tensor *ti = pt_safetensors_find(f, "ids"), *ts = pt_safetensors_find(f, "s");
    EXPECT(ta && th && ti && ts && !pt_safetensors_find(f, "nope"));
    if (ta && th && ti && ts) {
        EXPECT(ta->dtype == PT_ST_F32 && ta->ndim == 2 && ta->shape[0] == R && ta->shape[1] == K && ta->numel == R * K);
        EXPECT(ts->ndim == 0 && ts->numel == 1);
        EXPECT(ta->offset % 8 == 0); /* data section aligned */
        float back[R * K];
        EXPECT_OK(pt_safetensors_read_f32(f, ta, back, R * K));
        EXPECT(memcmp(back, a, sizeof(a)) == 0);
        EXPECT(pt_safetensors_read_f32(f, ta, back, R * K - 1) == PT_EINVAL);
        float hb[4];
        EXPECT_OK(pt_safetensors_read_f32(f, th, hb, 4));
        EXPECT(hb[0] == 0.5f && hb[1] == 1.5f && hb[2] == 2.5f && hb[3] == 3.5f);
        int32_t ib[6];
        EXPECT_OK(pt_safetensors_read_i32(f, ti, ib, 6));
        EXPECT(memcmp(ib, ids, sizeof(ids)) == 0);
        EXPECT(pt_safetensors_read_f32(f, ti, back, R * K) == PT_EFORMAT);
        EXPECT(pt_safetensors_read_i32(f, ta, ib, 100) == PT_EFORMAT);
        float sb = 0;
        EXPECT_OK(pt_safetensors_read_f32(f, ts, &sb, 1));
        EXPECT(sb == 42.0f);
    }
    pt_safetensors_close(f);

    /* every dtype the readers convert: F16/F64 to float, I64/I16/I8/U8 to int32, and an I64 that
     * does not fit int32 named by element */
    {
        uint16_t f16[3] = { 0x3c00, 0xc000, 0x3800 }; /* 1, -2, 0.5 */
        double f64[2] = { 0.125, -3.0 };
        int64_t i64[3] = { -5, 1 << 30, (int64_t)1 << 40 };
        int16_t i16[2] = { -300, 300 };
        int8_t i8[2] = { -7, 7 };
        uint8_t u8[2] = { 0, 255 };
        int64_t s2[1] = { 2 }, s3[1] = { 3 };
        EXPECT_OK(pt_safetensors_writer_create("conv.safetensors", &w));
        EXPECT_OK(pt_safetensors_writer_declare(w, "f16", PT_ST_F16, 1, s3));
        EXPECT_OK(pt_safetensors_writer_declare(w, "f64", PT_ST_F64, 1, s2));
        EXPECT_OK(pt_safetensors_writer_declare(w, "i64", PT_ST_I64, 1, s3));
        EXPECT_OK(pt_safetensors_writer_declare(w, "i16", PT_ST_I16, 1, s2));
        EXPECT_OK(pt_safetensors_writer_declare(w, "i8", PT_ST_I8, 1, s2));
        EXPECT_OK(pt_safetensors_writer_declare(w, "u8", PT_ST_U8, 1, s2));
        EXPECT_OK(pt_safetensors_writer_write(w, f16, sizeof f16));
        EXPECT_OK(pt_safetensors_writer_write(w, f64, sizeof f64));
        EXPECT_OK(pt_safetensors_writer_write(w, i64, sizeof i64));
        EXPECT_OK(pt_safetensors_writer_write(w, i16, sizeof i16));
        EXPECT_OK(pt_safetensors_writer_write(w, i8, sizeof i8));
        EXPECT_OK(pt_safetensors_writer_write(w, u8, sizeof u8));
        EXPECT_OK(pt_safetensors_writer_finish(w));
        pt_safetensors_writer_destroy(w);
        EXPECT_OK(pt_safetensors_open("conv.safetensors", &f));
        if (f) {
            float fb[3];
            int32_t ib[3];
            EXPECT_OK(pt_safetensors_read_f32(f, pt_safetensors_find(f, "f16"), fb, 3));
            EXPECT(fb[0] == 1.0f && fb[1] == -2.0f && fb[2] == 0.5f);
            EXPECT_OK(pt_safetensors_read_f32(f, pt_safetensors_find(f, "f64"), fb, 2));
            EXPECT(fb[0] == 0.125f && fb[1] == -3.0f);
            EXPECT(pt_safetensors_read_i32(f, pt_safetensors_find(f, "i64"), ib, 3) == PT_EFORMAT);
            EXPECT(strstr(pt_last_error(), "element 2") && strstr(pt_last_error(), "int32"));
            EXPECT(ib[0] == -5 && ib[1] == 1 << 30);
            EXPECT_OK(pt_safetensors_read_i32(f, pt_safetensors_find(f, "i16"), ib, 2));
            EXPECT(ib[0] == -300 && ib[1] == 300);
            EXPECT_OK(pt_safetensors_read_i32(f, pt_safetensors_find(f, "i8"), ib, 2));
            EXPECT(ib[0] == -7 && ib[1] == 7);
            EXPECT_OK(pt_safetensors_read_i32(f, pt_safetensors_find(f, "u8"), ib, 2));
            EXPECT(ib[0] == 0 && ib[1] == 255);
            EXPECT(pt_safetensors_read_i32(f, pt_safetensors_find(f, "f16"), ib, 3) == PT_EFORMAT);
            EXPECT(strstr(pt_last_error(), "is F16, not an integer tensor"));
            EXPECT(pt_safetensors_read_f32(f, pt_safetensors_find(f, "u8"), fb, 3) == PT_EFORMAT);
            EXPECT(strstr(pt_last_error(), "not a floating-point tensor"));
            pt_safetensors_close(f);
        }
        remove("conv.safetensors");
    }

    /* the writer refuses more bytes than declared and leaves no file behind */
    EXPECT_OK(pt_safetensors_writer_create("over.safetensors", &w));
    EXPECT_OK(pt_safetensors_writer_declare(w, "x", PT_ST_F32, 1, s_h));
    EXPECT(pt_safetensors_writer_write(w, a, 5 * sizeof(float)) == PT_EINVAL);
    pt_safetensors_writer_destroy(w);
    FILE *gone = fopen("over.safetensors", "rb");
    EXPECT(gone == NULL);
    if (gone)
        fclose(gone);
    gone = fopen("over.safetensors.tmp", "rb");
    EXPECT(gone == NULL);
    if (gone)
        fclose(gone);

    /* corrupt files */
    EXPECT(pt_safetensors_open("does-not-exist.safetensors", &f) == PT_EIO && f == NULL);
    FILE *tiny = fopen("corrupt.safetensors", "wb");
    if (tiny) {
        fputs("abc", tiny);
        fclose(tiny);
    }
    EXPECT(pt_safetensors_open("corrupt.safetensors", &f) == PT_EFORMAT && strstr(pt_last_error(), "too short"));
    const char *ok_hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_corrupt(ok_hdr, 1000000, 8, "header length");                       /* length past the file */
    expect_corrupt(ok_hdr, 0, 4, "truncated");                                 /* data cut short */
    expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 0, 12, "\"x\" spans 12");
    expect_corrupt("{\"x\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 8, "dtype");
    expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 0, 8, "dimension 0");
    expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 0, 8, "data_offsets");
    expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0, 8, "data_offsets");
    expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   0, 12, "overlap");
    expect_corrupt("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8], \"extra\":1}}", 0, 8, "extra");
    expect_corrupt("{\"x\": [1,2", 0, 8, "corrupt.safetensors");
    expect_corrupt("[1,2]", 0, 8, "not a JSON object");
    expect_corrupt("{\"__metadata__\":{\"a\":1}}", 0, 0, "__metadata__");
    remove("corrupt.safetensors");
    remove("rt.safetensors");
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
