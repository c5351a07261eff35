/* ckpt.compat: checkpoints of older format versions still load, newer ones are refused.
 *  - the format 1 seeds of the fuzz corpus (XXH64 block checksums, written by the format 1 writer)
 *    decode bit-exactly to the values make_corpus.c generated them from
 *  - the same values written now are format 2 (XXH3 checksums) and read back bit-exactly
 *  - the format 3 seed (pieces) decodes to its slices; a missing piece is named
 *  - the format 4 seed (boxes of column slices) decodes to its boxes; the missing part of a box is
 *    named in rows x columns; a box in a manifest claiming format 3 is refused
 *  - a manifest or shard header of a newer version is refused with "upgrade pipetrain"
 * Usage: test_ckpt_compat CORPUS_DIR (tests/ckpt/corpus)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/ckpt.h"

#include "ckpt_test.h"


/* The tensors make_corpus.c writes (same generator, same order). */
static float a[300], b[5];
static uint16_t h[200];
static const char *const xform_names[PT_CKPT_XFORM_COUNT] = { "none", "bytes", "expsplit" };

static void make_values(pt_ckpt_src *src)
{
    ckpt_test_corpus_values(a, b, h);
    src[0] = (pt_ckpt_src){ "blocks.0.attn.qkv.weight", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 3, 100 }, a };
    src[1] = (pt_ckpt_src){ "lnf.bias", PT_CKPT_ADAM_V, PT_CKPT_F32, 1, { 5 }, b };
    src[2] = (pt_ckpt_src){ "wte.weight", PT_CKPT_ADAM_M, PT_CKPT_BF16, 2, { 20, 10 }, h };
}

/* Decodes every tensor of a manifest + shard image (the fuzz corpus "read" layout: u32 manifest
 * length, manifest, shard) and compares it with src. */
static void check_image(const char *path, int want_version, pt_ckpt_hash want_hash, const pt_ckpt_src *src)
{
    size_t len;
    uint8_t *img = ckpt_test_slurp(path, &len);
    CHECK(img && len > 4, "cannot read %s", path);
    if (!img || len <= 4) {
        free(img);
        return;
    }
    uint32_t mlen;
    memcpy(&mlen, img, 4);
    CHECK(mlen <= len - 4, "%s: bad manifest length", path);
    pt_ckpt_manifest *m = NULL;
    CHECK(mlen <= len - 4 && pt_ckpt_manifest_parse((const char *)img + 4, mlen, path, &m) == PT_OK, "%s: %s", path,
          pt_last_error());
    if (m) {
        const uint8_t *shard = img + 4 + mlen;
        size_t shard_len = len - 4 - mlen;
        uint32_t shard_version;
        memcpy(&shard_version, shard + 8, 4);
        CHECK(m->version == want_version && shard_version == (uint32_t)want_version && m->n_entries == 3,
              "%s: manifest version %d, shard version %u, %d tensors", path, m->version, shard_version, m->n_entries);
        pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 2);
        o.block_elems = 128;
        pt_ckpt_codec *c = NULL;
        CHECK(pt_ckpt_codec_create(&o, &c) == PT_OK, "codec: %s", pt_last_error());
        for (int i = 0; c && i < 3; i++) {
            const pt_ckpt_entry *e = pt_ckpt_manifest_find(m, src[i].name, src[i].kind);
            CHECK(e != NULL, "%s: no %s", path, src[i].name);
            if (!e)
                continue;
            CHECK(e->hash == want_hash, "%s: %s uses %s, expected %s", path, e->name, pt_ckpt_hash_name(e->hash),
                  pt_ckpt_hash_name(want_hash));
            uint8_t out[1200];
            void *dst = out;
            const uint8_t *in = shard + e->offset;
            size_t in_len = (size_t)e->stored_bytes;
            CHECK(e->offset + e->stored_bytes <= shard_len && e->raw_bytes <= sizeof out, "%s: %s out of range", path,
                  e->name);
            if (e->offset + e->stored_bytes > shard_len || e->raw_bytes > sizeof out)
                continue;
            CHECK(pt_ckpt_decode(c, 1, &e, &in, &in_len, &dst) == PT_OK, "%s: %s: %s", path, e->name, pt_last_error());
            CHECK(memcmp(out, src[i].data, (size_t)e->raw_bytes) == 0, "%s: %s decoded to other values", path, e->name);
        }
        pt_ckpt_codec_destroy(c);
        pt_ckpt_manifest_destroy(m);
    }
    free(img);
}

static void run(const char *cmd)
{
    if (system(cmd) != 0)
        fprintf(stderr, "warning: '%s' failed\n", cmd);
}

/* Written now: the current version, read back through the reader; then the same directory with
 * its manifest's, then its shard's, version raised is refused. */
static void check_current(const pt_ckpt_src *src)
{
    char root[] = "/tmp/pt_ckpt_compat_XXXXXX";
    if (!mkdtemp(root)) {
        CHECK(0, "mkdtemp");
        return;
    }
    pt_train_state st = { .step = 3, .data_step = 3, .seed = 9, .run_json = "{}" };
    pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 2);
    o.block_elems = 128;
    CHECK(pt_ckpt_write(root, src, 3, &st, &o, 0) == PT_OK, "write: %s", pt_last_error());
    char dir[512], cmd[2048];
    snprintf(dir, sizeof dir, "%s/step_000003", root);
    pt_ckpt_reader *r = NULL;
    CHECK(pt_ckpt_reader_open(dir, 2, &r) == PT_OK, "open: %s", pt_last_error());
    if (r) {
        const pt_ckpt_manifest *m = pt_ckpt_reader_manifest(r);
        /* whole tensors only: version 2, which format-2 builds read (pieces make it 3: ckpt.zero) */
        CHECK(m->version == PT_CKPT_FORMAT_WHOLE && PT_CKPT_FORMAT_WHOLE == 2 && PT_CKPT_FORMAT_PIECES == 3 && PT_CKPT_FORMAT_VERSION == 4,
              "written as version %d", m->version);
        uint8_t out[3][1200];
        const pt_ckpt_entry *e[3];
        void *dst[3];
        for (int i = 0; i < 3; i++) {
            e[i] = pt_ckpt_manifest_find(m, src[i].name, src[i].kind);
            dst[i] = out[i];
        }
        CHECK(e[0] && e[1] && e[2] && e[0]->hash == PT_CKPT_HASH_XXH3, "entries and their checksum");
        if (e[0] && e[1] && e[2]) {
            CHECK(pt_ckpt_reader_read(r, 3, e, dst) == PT_OK, "read: %s", pt_last_error());
            for (int i = 0; i < 3; i++)
                CHECK(memcmp(out[i], src[i].data, (size_t)e[i]->raw_bytes) == 0, "%s read back other values",
                      src[i].name);
        }
        pt_ckpt_reader_close(r);
    }
    /* a shard header from a newer build */
    snprintf(cmd, sizeof cmd, "cp %s/shard-0.ptz %s/shard.bak && printf '\\003' | dd of=%s/shard-0.ptz bs=1 seek=8 "
                              "conv=notrunc status=none", dir, dir, dir);
    run(cmd);
    r = NULL;
    CHECK(pt_ckpt_reader_open(dir, 1, &r) == PT_OK, "open: %s", pt_last_error());
    if (r) {
        const pt_ckpt_entry *e = &pt_ckpt_reader_manifest(r)->entries[0];
        uint8_t out[1200];
        void *dst = out;
        CHECK(pt_ckpt_reader_read(r, 1, &e, &dst) == PT_EFORMAT && strstr(pt_last_error(), "shard-0.ptz") &&
                  strstr(pt_last_error(), "format 3 is newer") && strstr(pt_last_error(), "upgrade pipetrain"),
              "newer shard: %s", pt_last_error());
        pt_ckpt_reader_close(r);
    }
    snprintf(cmd, sizeof cmd, "mv %s/shard.bak %s/shard-0.ptz", dir, dir);
    run(cmd);
    /* a manifest from a newer build */
    snprintf(cmd, sizeof cmd, "sed -i 's/\"version\":\\t2,/\"version\":\\t5,/' %s/manifest.json", dir);
    run(cmd);
    pt_ckpt_manifest *m = NULL;
    CHECK(pt_ckpt_manifest_read(dir, &m) == PT_EFORMAT && strstr(pt_last_error(), "manifest.json") &&
              strstr(pt_last_error(), "format 5 is newer than this build (4); upgrade pipetrain"),
          "newer manifest: %s", pt_last_error());
    pt_ckpt_manifest_destroy(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    run(cmd);
}

/* The format-3 seed (make_corpus.c): pieces decode to their slices of the values; the pieces of
 * blocks.0.attn.qkv.weight cover it; wte.weight's adam_m lacks [0, 50), which is named. */
static void check_pieces(const char *path)
{
    float pa[300], pb[5];
    uint16_t ph[200];
    ckpt_test_corpus_values(pa, pb, ph);
    pt_ckpt_src src[4];
    ckpt_test_corpus_pieces(pa, pb, ph, src);
    size_t len;
    uint8_t *img = ckpt_test_slurp(path, &len);
    CHECK(img && len > 4, "cannot read %s", path);
    if (!img || len <= 4) {
        free(img);
        return;
    }
    uint32_t mlen;
    memcpy(&mlen, img, 4);
    pt_ckpt_manifest *m = NULL;
    CHECK(mlen <= len - 4 && pt_ckpt_manifest_parse((const char *)img + 4, mlen, path, &m) == PT_OK, "%s: %s", path,
          pt_last_error());
    if (m) {
        const uint8_t *shard = img + 4 + mlen;
        uint32_t shard_version;
        memcpy(&shard_version, shard + 8, 4);
        CHECK(m->version == 3 && shard_version == 2 && m->n_entries == 4, "%s: manifest version %d, shard %u, %d tensors",
              path, m->version, shard_version, m->n_entries);
        pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 2);
        o.block_elems = 128;
        pt_ckpt_codec *c = NULL;
        CHECK(pt_ckpt_codec_create(&o, &c) == PT_OK, "codec: %s", pt_last_error());
        for (int i = 0; c && i < 4 && i < m->n_entries; i++) {
            const pt_ckpt_entry *e = &m->entries[i];
            uint64_t lo = src[i].elem_hi ? src[i].elem_lo : 0;
            CHECK(strcmp(e->name, src[i].name) == 0 && e->elem_lo == lo &&
                      e->elem_hi == (src[i].elem_hi ? src[i].elem_hi : pt_ckpt_entry_numel(e)) &&
                      pt_ckpt_entry_is_piece(e) == (src[i].elem_hi != 0),
                  "%s: entry %d is %s [%llu, %llu)", path, i, e->name, (unsigned long long)e->elem_lo,
                  (unsigned long long)e->elem_hi);
            uint8_t out[1200];
            void *dst = out;
            const uint8_t *in = shard + e->offset;
            size_t in_len = (size_t)e->stored_bytes;
            if (e->offset + e->stored_bytes > len - 4 - mlen || e->raw_bytes > sizeof out) {
                CHECK(0, "%s: %s out of range", path, e->name);
                continue;
            }
            CHECK(pt_ckpt_decode(c, 1, &e, &in, &in_len, &dst) == PT_OK, "%s: %s: %s", path, e->name, pt_last_error());
            CHECK(memcmp(out, src[i].data, (size_t)e->raw_bytes) == 0, "%s: piece %d decoded to other values", path, i);
        }
        pt_ckpt_codec_destroy(c);
        CHECK(pt_ckpt_manifest_cover(m, "blocks.0.attn.qkv.weight", PT_CKPT_PARAM, 0, 300, path) == PT_OK,
              "%s: the qkv pieces: %s", path, pt_last_error());
        CHECK(pt_ckpt_manifest_cover(m, "wte.weight", PT_CKPT_ADAM_M, 0, 200, path) == PT_EFORMAT &&
                  strstr(pt_last_error(), "tensor wte.weight (adam_m): no piece holds elements [0, 50) of its 200"),
              "%s: wte's missing piece: %s", path, pt_last_error());
        CHECK(pt_ckpt_manifest_cover(m, "wte.weight", PT_CKPT_ADAM_M, 60, 200, path) == PT_OK,
              "%s: wte [60, 200) is held: %s", path, pt_last_error());
        pt_ckpt_manifest_destroy(m);
    }
    free(img);
}

/* The format-4 seed (make_corpus.c): boxes decode to their values and read back where they are;
 * the missing start of the second box is named in rows x columns; version 4 without boxes' fields
 * would be refused in a format-3 manifest. */
static void check_boxes(const char *path)
{
    float pa[300], pb[5];
    uint16_t ph[200];
    ckpt_test_corpus_values(pa, pb, ph);
    pt_ckpt_src src[3];
    ckpt_test_corpus_boxes(pa, pb, src);
    size_t len;
    uint8_t *img = ckpt_test_slurp(path, &len);
    CHECK(img && len > 4, "cannot read %s", path);
    if (!img || len <= 4) {
        free(img);
        return;
    }
    uint32_t mlen;
    memcpy(&mlen, img, 4);
    pt_ckpt_manifest *m = NULL;
    CHECK(mlen <= len - 4 && pt_ckpt_manifest_parse((const char *)img + 4, mlen, path, &m) == PT_OK, "%s: %s", path,
          pt_last_error());
    if (m) {
        const uint8_t *shard = img + 4 + mlen;
        CHECK(m->version == 4 && m->n_entries == 3, "%s: manifest version %d, %d tensors", path, m->version,
              m->n_entries);
        static const char *const where[3] = { "rows 0:10 cols 0:12", "rows 0:10 cols 12:30 values 30:180", "all" };
        pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 2);
        o.block_elems = 128;
        pt_ckpt_codec *c = NULL;
        CHECK(pt_ckpt_codec_create(&o, &c) == PT_OK, "codec: %s", pt_last_error());
        for (int i = 0; c && i < 3 && i < m->n_entries; i++) {
            const pt_ckpt_entry *e = &m->entries[i];
            char w[96];
            pt_ckpt_entry_where(e, w, sizeof w);
            CHECK(strcmp(e->name, src[i].name) == 0 && strcmp(w, where[i]) == 0 &&
                      pt_ckpt_entry_is_box(e) == (i < 2),
                  "%s: entry %d is %s %s", path, i, e->name, w);
            uint8_t out[1200];
            void *dst = out;
            const uint8_t *in = shard + e->offset;
            size_t in_len = (size_t)e->stored_bytes;
            if (e->offset + e->stored_bytes > len - 4 - mlen || e->raw_bytes > sizeof out) {
                CHECK(0, "%s: %s out of range", path, e->name);
                continue;
            }
            CHECK(pt_ckpt_decode(c, 1, &e, &in, &in_len, &dst) == PT_OK, "%s: %s: %s", path, e->name, pt_last_error());
            CHECK(memcmp(out, src[i].data, (size_t)e->raw_bytes) == 0, "%s: entry %d decoded to other values", path, i);
        }
        pt_ckpt_codec_destroy(c);
        CHECK(pt_ckpt_manifest_cover(m, "blocks.0.attn.proj.weight", PT_CKPT_PARAM, 0, 300, path) == PT_EFORMAT &&
                  strstr(pt_last_error(), "tensor blocks.0.attn.proj.weight (param): no piece holds rows [0, 1) x "
                                          "columns [12, 30) of its 10x30"),
              "%s: the missing start of the second box: %s", path, pt_last_error());
        CHECK(pt_ckpt_manifest_cover(m, "blocks.0.attn.proj.weight", PT_CKPT_PARAM, 60, 300, path) == PT_OK,
              "%s: rows 2.. are held: %s", path, pt_last_error());
        pt_ckpt_manifest_destroy(m);
    }
    /* the same manifest claiming format 3, which has no boxes */
    char *text = malloc(mlen + 1);
    if (text) {
        memcpy(text, img + 4, mlen);
        text[mlen] = 0;
        char *v = strstr(text, "\"version\":\t4");
        CHECK(v != NULL, "%s: no version 4 field", path);
        if (v) {
            v[strlen("\"version\":\t")] = '3';
            m = NULL;
            CHECK(pt_ckpt_manifest_parse(text, mlen, path, &m) == PT_EFORMAT &&
                      strstr(pt_last_error(), "has a 'box', which format 3 does not have"),
                  "%s as format 3: %s", path, pt_last_error());
            pt_ckpt_manifest_destroy(m);
        }
        free(text);
    }
    free(img);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    pt_ckpt_src src[3];
    make_values(src);
    char path[4096];
    for (int t = 0; t < PT_CKPT_XFORM_COUNT; t++) {
        snprintf(path, sizeof path, "%s/read/v1-%s.bin", argv[1], xform_names[t]);
        check_image(path, 1, PT_CKPT_HASH_XXH64, src);
        snprintf(path, sizeof path, "%s/read/v2-%s.bin", argv[1], xform_names[t]);
        check_image(path, 2, PT_CKPT_HASH_XXH3, src);
    }
    snprintf(path, sizeof path, "%s/read/v3-pieces.bin", argv[1]);
    check_pieces(path);
    snprintf(path, sizeof path, "%s/read/v4-boxes.bin", argv[1]);
    check_boxes(path);
    check_current(src);
    if (failures) {
        fprintf(stderr, "ckpt.compat: %d failure(s)\n", failures);
        return 1;
    }
    printf("ckpt.compat: ok (format 1, 2, 3 (pieces) and 4 (boxes) read, whole tensors written as 2, newer "
           "refused)\n");
    return 0;
}
