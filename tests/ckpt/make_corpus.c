/* Writes the seed corpus of the checkpoint fuzz targets (tests/ckpt/corpus/{manifest,read}/):
 * small real checkpoints with every transform and dtype, multi-block tensors and raw and zstd
 * planes, named v<format version>-<transform>, v3-pieces (tensors stored as pieces, format 3) and
 * v4-boxes (boxes of tensor-parallel column slices, format 4).
 * Run it after a format change (and keep the older
 * versions' seeds: ckpt.compat reads them):  make_ckpt_corpus tests/ckpt/corpus */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/ckpt.h"

#include "ckpt_test.h"

static int write_file(const char *path, const void *a, size_t na, const void *b, size_t nb, const void *c, size_t nc)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 1;
    int bad = fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb) || (nc && fwrite(c, 1, nc, f) != nc);
    return fclose(f) != 0 || bad;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    char tmp[] = "/tmp/pt_ckpt_corpus_XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    float a[300], b[5];
    uint16_t h[200];
    ckpt_test_corpus_values(a, b, h);
    static const char *const names[PT_CKPT_XFORM_COUNT] = { "none", "bytes", "expsplit" };
    for (int t = 0; t < PT_CKPT_XFORM_COUNT; t++) {
        pt_ckpt_src src[3] = {
            { "blocks.0.attn.qkv.weight", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 3, 100 }, a },
            { "lnf.bias", PT_CKPT_ADAM_V, PT_CKPT_F32, 1, { 5 }, b },
            { "wte.weight", PT_CKPT_ADAM_M, PT_CKPT_BF16, 2, { 20, 10 }, h },
        };
        pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 1);
        o.transform = (pt_ckpt_transform)t;
        o.block_elems = 128;
        char root[256], path[512];
        snprintf(root, sizeof root, "%s/%s", tmp, names[t]);
        pt_train_state st = { .step = 3, .data_step = 3, .seed = 9, .run_json = "{\"model\":\"gpt2-tiny\"}" };
        if (pt_ckpt_write(root, src, 3, &st, &o, 0) != PT_OK) {
            fprintf(stderr, "%s\n", pt_last_error());
            return 1;
        }
        size_t mlen, slen;
        snprintf(path, sizeof path, "%s/step_000003/manifest.json", root);
        uint8_t *man = ckpt_test_slurp(path, &mlen);
        snprintf(path, sizeof path, "%s/step_000003/shard-0.ptz", root);
        uint8_t *shard = ckpt_test_slurp(path, &slen);
        if (!man || !shard)
            return 1;
        uint32_t len32 = (uint32_t)mlen;
        snprintf(path, sizeof path, "%s/manifest/v%d-%s.json", argv[1], PT_CKPT_FORMAT_WHOLE, names[t]);
        if (write_file(path, man, mlen, NULL, 0, NULL, 0))
            return 1;
        snprintf(path, sizeof path, "%s/read/v%d-%s.bin", argv[1], PT_CKPT_FORMAT_WHOLE, names[t]);
        if (write_file(path, &len32, 4, man, mlen, shard, slen))
            return 1;
        free(man);
        free(shard);
    }
    /* format 3: tensors stored as pieces (ZeRO-1 slices), whole ones beside them; format 4: boxes */
    for (int f = PT_CKPT_FORMAT_PIECES; f <= PT_CKPT_FORMAT_VERSION; f++) {
        pt_ckpt_src src[4];
        int n = 4;
        if (f == PT_CKPT_FORMAT_PIECES) {
            ckpt_test_corpus_pieces(a, b, h, src);
        } else {
            ckpt_test_corpus_boxes(a, b, src);
            n = 3;
        }
        pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 1);
        o.block_elems = 128;
        char root[256], path[512];
        snprintf(root, sizeof root, "%s/%s", tmp, f == PT_CKPT_FORMAT_PIECES ? "pieces" : "boxes");
        pt_train_state st = { .step = 3, .data_step = 3, .seed = 9, .run_json = "{\"model\":\"gpt2-tiny\"}" };
        if (pt_ckpt_write(root, src, n, &st, &o, 0) != PT_OK) {
            fprintf(stderr, "%s\n", pt_last_error());
            return 1;
        }
        size_t mlen, slen;
        snprintf(path, sizeof path, "%s/step_000003/manifest.json", root);
        uint8_t *man = ckpt_test_slurp(path, &mlen);
        snprintf(path, sizeof path, "%s/step_000003/shard-0.ptz", root);
        uint8_t *shard = ckpt_test_slurp(path, &slen);
        if (!man || !shard)
            return 1;
        uint32_t len32 = (uint32_t)mlen;
        const char *kind = f == PT_CKPT_FORMAT_PIECES ? "pieces" : "boxes";
        snprintf(path, sizeof path, "%s/manifest/v%d-%s.json", argv[1], f, kind);
        if (write_file(path, man, mlen, NULL, 0, NULL, 0))
            return 1;
        snprintf(path, sizeof path, "%s/read/v%d-%s.bin", argv[1], f, kind);
        if (write_file(path, &len32, 4, man, mlen, shard, slen))
            return 1;
        free(man);
        free(shard);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    return system(cmd) != 0;
}
