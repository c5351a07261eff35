/* ckpt.codec: the plane/zstd codec round-trips every bit pattern, and damage is caught.
 *  - XXH64 agrees with zstd's own content checksum (its low 32 bits) at every length 0..300;
 *    XXH3-64 gives the reference values
 *  - round trip bit-exact for every transform x dtype x thread count (and zstd's search, the fast
 *    planes' one, and a high level), on normal values, random
 *    bit patterns (NaN payloads, infinities), -0, denormals, odd sizes and block boundaries
 *  - flipping any single byte of an encoded tensor, or truncating it, makes decode fail
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "pipetrain/ckpt.h"

#include "ckpt_test.h"


static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t next_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static double next_normal(void)
{
    double u1 = ((next_u64() >> 11) + 1.0) / 9007199254740993.0, u2 = (next_u64() >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(2 * 3.14159265358979323846 * u2);
}

static void test_xxh64(void)
{
    CHECK(pt_ckpt_xxh64("", 0, 0) == 0xEF46DB3751D8E999ULL, "xxh64('') = %016llx",
          (unsigned long long)pt_ckpt_xxh64("", 0, 0));
    uint8_t buf[300], frame[1024];
    for (int i = 0; i < 300; i++)
        buf[i] = (uint8_t)next_u64();
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    for (size_t n = 0; n <= 300; n++) {
        size_t r = ZSTD_compress2(cc, frame, sizeof frame, buf, n);
        CHECK(!ZSTD_isError(r) && r >= 4, "zstd failed at %zu", n);
        uint32_t zsum;
        memcpy(&zsum, frame + r - 4, 4);
        uint32_t ours = (uint32_t)pt_ckpt_xxh64(buf, n, 0);
        CHECK(zsum == ours, "length %zu: zstd's checksum %08x, ours %08x", n, zsum, ours);
    }
    ZSTD_freeCCtx(cc);
    CHECK(pt_ckpt_hash_bytes(PT_CKPT_HASH_XXH3, "", 0) == 0x2D06800538D394C2ULL &&
              pt_ckpt_hash_bytes(PT_CKPT_HASH_XXH3, "abc", 3) == 0x78AF5F94892F3950ULL,
          "xxh3('') = %016llx", (unsigned long long)pt_ckpt_hash_bytes(PT_CKPT_HASH_XXH3, "", 0));
    CHECK(pt_ckpt_hash_bytes(PT_CKPT_HASH_XXH64, "", 0) == 0xEF46DB3751D8E999ULL, "xxh64 through pt_ckpt_hash_bytes");
}

/* Fills n values of dtype dt with pattern p: 0 normal(0, 0.02), 1 random bits, 2 specials. */
static void fill(void *data, size_t n, pt_ckpt_dtype dt, int p)
{
    for (size_t i = 0; i < n; i++) {
        float f;
        uint32_t bits;
        switch (p) {
        case 0:
            f = (float)(0.02 * next_normal());
            memcpy(&bits, &f, 4);
            break;
        case 1:
            bits = (uint32_t)next_u64();
            break;
        default: {
            static const uint32_t specials[] = { 0x80000000u, 0x00000000u, 0x00000001u, 0x807fffffu, 0x7f800000u,
                                                 0xff800000u, 0x7fc00000u, 0x7fa12345u, 0xffc0dead, 0x00400000u,
                                                 0x3f800000u, 0x7f7fffffu };
            bits = specials[next_u64() % (sizeof specials / sizeof specials[0])];
        }
        }
        if (dt == PT_CKPT_F32)
            memcpy((uint8_t *)data + 4 * i, &bits, 4);
        else {
            uint16_t h = (uint16_t)(bits >> 16);
            memcpy((uint8_t *)data + 2 * i, &h, 2);
        }
    }
}

static int roundtrip(pt_ckpt_codec *c, pt_ckpt_dtype dt, size_t n, int pattern, const char *what)
{
    size_t es = pt_ckpt_dtype_size(dt);
    uint8_t *src = malloc(n * es + 1), *back = malloc(n * es + 1);
    size_t cap = pt_ckpt_encode_bound(dt, n, 1000);
    uint8_t *enc = malloc(cap + 1);
    fill(src, n, dt, pattern);
    pt_ckpt_src s = { .name = "t", .kind = PT_CKPT_PARAM, .dtype = dt, .ndim = 1, .shape = { (int64_t)n }, .data = src };
    pt_ckpt_entry e;
    pt_status st = pt_ckpt_encode(c, 1, &s, &enc, &cap, &e);
    int ok = 1;
    CHECK(st == PT_OK, "%s: encode: %s", what, pt_last_error());
    if (st == PT_OK) {
        const pt_ckpt_entry *ep = &e;
        const uint8_t *in = enc;
        size_t len = (size_t)e.stored_bytes;
        void *out = back;
        memset(back, 0xAB, n * es);
        st = pt_ckpt_decode(c, 1, &ep, &in, &len, &out);
        CHECK(st == PT_OK, "%s: decode: %s", what, pt_last_error());
        ok = st == PT_OK && memcmp(src, back, n * es) == 0;
        CHECK(ok, "%s: %zu values do not round-trip", what, n);
        pt_ckpt_entry_clear(&e);
    }
    free(src);
    free(back);
    free(enc);
    return ok;
}

static void test_roundtrip(void)
{
    static const size_t sizes[] = { 0, 1, 2, 3, 7, 31, 999, 1000, 1001, 2999, 4097 };
    /* zstd's level-1 search, the fast planes' search, and level 9 (where fast_planes does not apply) */
    static const int levels[3] = { 1, 1, 9 }, fast[3] = { 0, 1, 1 };
    for (int t = 0; t < PT_CKPT_XFORM_COUNT; t++)
        for (int raw = 0; raw < 2; raw++)
            for (int threads = 1; threads <= 2; threads++) {
                int v = (t + raw + threads) % 3; /* the three variants rotate over the combinations */
                pt_ckpt_codec_opts o = { .transform = (pt_ckpt_transform)t, .zstd_level = levels[v],
                                         .raw_if_no_gain = raw, .fast_planes = fast[v], .block_elems = 1000,
                                         .n_threads = threads };
                pt_ckpt_codec *c;
                CHECK(pt_ckpt_codec_create(&o, &c) == PT_OK, "codec: %s", pt_last_error());
                for (int dt = 0; dt < PT_CKPT_DTYPE_COUNT; dt++)
                    for (int p = 0; p < 3; p++)
                        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
                            char what[128];
                            snprintf(what, sizeof what, "%s %s raw=%d thr=%d level %d fast=%d pattern %d n=%zu",
                                     pt_ckpt_transform_name((pt_ckpt_transform)t),
                                     pt_ckpt_dtype_name((pt_ckpt_dtype)dt), raw, threads, levels[v], fast[v], p,
                                     sizes[k]);
                            roundtrip(c, (pt_ckpt_dtype)dt, sizes[k], p, what);
                        }
                pt_ckpt_codec_destroy(c);
            }
}

/* Several tensors in one call share the threads; each must come back intact. */
static void test_many(void)
{
    pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 2);
    o.block_elems = 512;
    pt_ckpt_codec *c;
    CHECK(pt_ckpt_codec_create(&o, &c) == PT_OK, "codec: %s", pt_last_error());
    enum { N = 5 };
    size_t n[N] = { 5000, 1, 512, 513, 3000 };
    pt_ckpt_src s[N];
    pt_ckpt_entry e[N];
    uint8_t *enc[N], *back[N];
    size_t cap[N], len[N];
    float *src[N];
    for (int i = 0; i < N; i++) {
        src[i] = malloc(n[i] * 4);
        back[i] = malloc(n[i] * 4);
        fill(src[i], n[i], PT_CKPT_F32, i % 3);
        cap[i] = pt_ckpt_encode_bound(PT_CKPT_F32, n[i], 512);
        enc[i] = malloc(cap[i]);
        s[i] = (pt_ckpt_src){ .name = "m", .dtype = PT_CKPT_F32, .ndim = 2, .shape = { 1, (int64_t)n[i] }, .data = src[i] };
    }
    CHECK(pt_ckpt_encode(c, N, s, enc, cap, e) == PT_OK, "encode: %s", pt_last_error());
    const pt_ckpt_entry *ep[N];
    const uint8_t *in[N];
    void *out[N];
    for (int i = 0; i < N; i++) {
        ep[i] = &e[i];
        in[i] = enc[i];
        len[i] = (size_t)e[i].stored_bytes;
        out[i] = back[i];
    }
    CHECK(pt_ckpt_decode(c, N, ep, in, len, out) == PT_OK, "decode: %s", pt_last_error());
    for (int i = 0; i < N; i++) {
        CHECK(memcmp(src[i], back[i], n[i] * 4) == 0, "tensor %d differs", i);
        pt_ckpt_entry_clear(&e[i]);
        free(src[i]);
        free(back[i]);
        free(enc[i]);
    }
    pt_ckpt_codec_destroy(c);
}

/* Every single-byte change of the encoded bytes, and every truncation, is an error. */
static void test_damage(void)
{
    for (int t = 0; t < PT_CKPT_XFORM_COUNT; t++) {
        pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 1);
        o.transform = (pt_ckpt_transform)t;
        o.block_elems = 200;
        pt_ckpt_codec *c;
        CHECK(pt_ckpt_codec_create(&o, &c) == PT_OK, "codec: %s", pt_last_error());
        size_t n = 500;
        float src[500], back[500];
        fill(src, n, PT_CKPT_F32, 0);
        size_t cap = pt_ckpt_encode_bound(PT_CKPT_F32, n, 200);
        uint8_t *enc = malloc(cap);
        pt_ckpt_src s = { .name = "d", .dtype = PT_CKPT_F32, .ndim = 1, .shape = { (int64_t)n }, .data = src };
        pt_ckpt_entry e;
        CHECK(pt_ckpt_encode(c, 1, &s, &enc, &cap, &e) == PT_OK, "encode: %s", pt_last_error());
        const pt_ckpt_entry *ep = &e;
        void *out = back;
        size_t len = (size_t)e.stored_bytes;
        int undetected = 0;
        for (size_t i = 0; i < len; i++) {
            for (int bit = 0; bit < 8; bit += 3) {
                enc[i] ^= (uint8_t)(1u << bit);
                const uint8_t *in = enc;
                if (pt_ckpt_decode(c, 1, &ep, &in, &len, &out) == PT_OK)
                    undetected++;
                enc[i] ^= (uint8_t)(1u << bit);
            }
        }
        CHECK(undetected == 0, "%s: %d of %zu byte flips went undetected", pt_ckpt_transform_name(o.transform),
              undetected, len * 3);
        for (size_t cut = 0; cut < len; cut += 1 + cut / 8) {
            const uint8_t *in = enc;
            CHECK(pt_ckpt_decode(c, 1, &ep, &in, &cut, &out) == PT_EFORMAT, "%s: truncation to %zu of %zu not caught",
                  pt_ckpt_transform_name(o.transform), cut, len);
        }
        const uint8_t *in = enc;
        CHECK(pt_ckpt_decode(c, 1, &ep, &in, &len, &out) == PT_OK && memcmp(src, back, sizeof src) == 0,
              "undamaged copy must still decode: %s", pt_last_error());
        pt_ckpt_entry_clear(&e);
        free(enc);
        pt_ckpt_codec_destroy(c);
    }
}

/* The plane coder must shrink bf16 N(0, 0.02) weights below plain zstd (what the format is for). */
static void test_gain(void)
{
    size_t n = 1 << 18;
    uint16_t *w = malloc(n * 2);
    fill(w, n, PT_CKPT_BF16, 0);
    size_t stored[PT_CKPT_XFORM_COUNT];
    for (int t = 0; t < PT_CKPT_XFORM_COUNT; t++) {
        pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 1);
        o.transform = (pt_ckpt_transform)t;
        o.choose_transform = 0;
        pt_ckpt_codec *c;
        CHECK(pt_ckpt_codec_create(&o, &c) == PT_OK, "codec: %s", pt_last_error());
        size_t cap = pt_ckpt_encode_bound(PT_CKPT_BF16, n, 0);
        uint8_t *enc = malloc(cap);
        pt_ckpt_src s = { .name = "g", .dtype = PT_CKPT_BF16, .ndim = 1, .shape = { (int64_t)n }, .data = w };
        pt_ckpt_entry e;
        CHECK(pt_ckpt_encode(c, 1, &s, &enc, &cap, &e) == PT_OK, "encode: %s", pt_last_error());
        stored[t] = (size_t)e.stored_bytes;
        if (t == PT_CKPT_XFORM_EXPSPLIT)
            CHECK(e.blocks[0].codec[0] == PT_CKPT_PLANE_RAW && e.blocks[0].codec[1] == PT_CKPT_PLANE_ZSTD,
                  "expsplit bf16: the sign+mantissa plane should be raw and the exponent plane zstd");
        pt_ckpt_entry_clear(&e);
        free(enc);
        pt_ckpt_codec_destroy(c);
    }
    CHECK(stored[PT_CKPT_XFORM_EXPSPLIT] < stored[PT_CKPT_XFORM_BYTES] &&
              stored[PT_CKPT_XFORM_BYTES] < stored[PT_CKPT_XFORM_NONE],
          "bf16 sizes: none %zu, bytes %zu, expsplit %zu", stored[0], stored[1], stored[2]);
    free(w);
}

/* Stored size of n f32 values under a codec option set. */
static size_t stored_size(const float *x, size_t n, pt_ckpt_transform t, int choose, pt_ckpt_transform *chosen)
{
    pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 2);
    o.transform = t;
    o.choose_transform = choose;
    pt_ckpt_codec *c;
    CHECK(pt_ckpt_codec_create(&o, &c) == PT_OK, "codec: %s", pt_last_error());
    size_t cap = pt_ckpt_encode_bound(PT_CKPT_F32, n, 0), size = 0;
    uint8_t *enc = malloc(cap);
    pt_ckpt_src s = { .name = "c", .dtype = PT_CKPT_F32, .ndim = 1, .shape = { (int64_t)n }, .data = x };
    pt_ckpt_entry e;
    CHECK(pt_ckpt_encode(c, 1, &s, &enc, &cap, &e) == PT_OK, "encode: %s", pt_last_error());
    size = (size_t)e.stored_bytes;
    *chosen = e.transform;
    pt_ckpt_entry_clear(&e);
    free(enc);
    pt_ckpt_codec_destroy(c);
    return size;
}

/* Per tensor, the writer keeps whichever of bytes / expsplit stores it smaller: weights (random
 * signs), positive values (second moments) and values whose signs come in runs (first moments). */
static void test_choose(void)
{
    size_t n = 1 << 19;
    float *x = malloc(n * sizeof(float));
    for (int dist = 0; dist < 3; dist++) {
        for (size_t i = 0; i < n; i++) {
            float v = (float)(0.02 * next_normal());
            if (dist == 1)
                v = v * v;
            if (dist == 2)
                v = ((i / 64) % 2 ? -1.0f : 1.0f) * fabsf(v);
            x[i] = v;
        }
        pt_ckpt_transform tb, te, tc;
        size_t sb = stored_size(x, n, PT_CKPT_XFORM_BYTES, 0, &tb), se = stored_size(x, n, PT_CKPT_XFORM_EXPSPLIT, 0, &te);
        size_t sc = stored_size(x, n, PT_CKPT_XFORM_EXPSPLIT, 1, &tc);
        size_t best = sb < se ? sb : se;
        CHECK(sc <= best + best / 200, "distribution %d: chose %s (%zu bytes); bytes %zu, expsplit %zu", dist,
              pt_ckpt_transform_name(tc), sc, sb, se);
    }
    free(x);
}

int main(void)
{
    test_xxh64();
    test_roundtrip();
    test_many();
    test_damage();
    test_gain();
    test_choose();
    if (failures) {
        fprintf(stderr, "ckpt.codec: %d failure(s)\n", failures);
        return 1;
    }
    printf("ckpt.codec: ok\n");
    return 0;
}
