/* Fuzz targets for the checkpoint readers, and the replay driver ctest runs (ckpt.fuzz_replay).
 *
 *   manifest: the bytes are a manifest.json; parse (full validation), serialise, free.
 *   read:     u32 little-endian manifest length, the manifest, then the bytes of shard-0.ptz;
 *             every tensor of the manifest is bounds-checked against the shard and decoded (the
 *             same checks pt_ckpt_reader_read makes), so any damage must end in an error.
 *
 * Built with clang -fsanitize=fuzzer (-DPT_CKPT_LIBFUZZER=fuzz_manifest|fuzz_read: CMakeLists.txt) it
 * is a libFuzzer target. Otherwise main() replays DIR/manifest/ * and DIR/read/ * and, for each
 * file, a fixed set of mutations (truncations, byte flips, byte sets), which must never crash.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pipetrain/ckpt.h"

#include "ckpt_test.h"

/* Readers allocate what a manifest asks for; the fuzzer's limits keep that small. */
#define FUZZ_MAX_RAW ((uint64_t)16 << 20)
#define FUZZ_MAX_BLOCK ((uint64_t)1 << 16)

static int fuzz_manifest(const uint8_t *data, size_t size)
{
    pt_ckpt_manifest *m = NULL;
    if (pt_ckpt_manifest_parse((const char *)data, size, "fuzz", &m) == PT_OK) {
        cJSON *j = NULL;
        if (pt_ckpt_manifest_to_json(m, &j) == PT_OK)
            cJSON_Delete(j);
        for (int i = 0; i < m->n_entries; i++) {
            (void)pt_ckpt_manifest_find(m, m->entries[i].name, m->entries[i].kind);
            /* pieces: coverage of the whole tensor and of a part of it */
            uint64_t numel = pt_ckpt_entry_numel(&m->entries[i]);
            (void)pt_ckpt_manifest_cover(m, m->entries[i].name, m->entries[i].kind, 0, numel, "fuzz");
            (void)pt_ckpt_manifest_cover(m, m->entries[i].name, m->entries[i].kind, numel / 3, numel / 2, "fuzz");
            char where[128];
            pt_ckpt_entry_where(&m->entries[i], where, sizeof where);
        }
        pt_ckpt_manifest_destroy(m);
    }
    return 0;
}

static int fuzz_read(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint32_t mlen;
    memcpy(&mlen, data, 4);
    if (mlen > size - 4)
        return 0;
    const uint8_t *shard = data + 4 + mlen;
    size_t shard_len = size - 4 - mlen;
    pt_ckpt_manifest *m = NULL;
    if (pt_ckpt_manifest_parse((const char *)data + 4, mlen, "fuzz", &m) != PT_OK)
        return 0;
    uint64_t max_block = 1;
    for (int i = 0; i < m->n_entries; i++) {
        const pt_ckpt_entry *e = &m->entries[i];
        if (e->raw_bytes > FUZZ_MAX_RAW || e->block_elems > FUZZ_MAX_BLOCK) {
            pt_ckpt_manifest_destroy(m);
            return 0;
        }
        if (e->block_elems > max_block)
            max_block = e->block_elems;
    }
    pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 1);
    o.block_elems = max_block;
    pt_ckpt_codec *c = NULL;
    if (pt_ckpt_codec_create(&o, &c) == PT_OK) {
        for (int i = 0; i < m->n_entries; i++) {
            const pt_ckpt_entry *e = &m->entries[i];
            if (e->rank != 0 || e->offset > shard_len || e->stored_bytes > shard_len - e->offset)
                continue; /* the reader reports these as truncation */
            void *out = malloc(e->raw_bytes ? (size_t)e->raw_bytes : 1);
            if (!out)
                continue;
            const uint8_t *src = shard + e->offset;
            size_t len = (size_t)e->stored_bytes;
            (void)pt_ckpt_decode(c, 1, &e, &src, &len, &out);
            free(out);
        }
        pt_ckpt_codec_destroy(c);
    }
    pt_ckpt_manifest_destroy(m);
    return 0;
}

#ifdef PT_CKPT_LIBFUZZER /* fuzz_manifest or fuzz_read */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return PT_CKPT_LIBFUZZER(data, size);
}
#else

/* The file, then deterministic mutations of it. */
static long replay(int (*target)(const uint8_t *, size_t), const uint8_t *data, size_t len)
{
    long runs = 0;
    uint8_t *buf = malloc(len + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, len);
    target(buf, len);
    runs++;
    size_t step = len / 64 + 1;
    for (size_t cut = 0; cut < len; cut += step, runs++)
        target(buf, cut);
    static const uint8_t vals[] = { 0x00, 0xff, '0', '9', '"', '-', '[', '{', 0x7f };
    uint64_t x = 0x2545F4914F6CDD1DULL ^ len;
    for (int k = 0; k < 400 && len; k++, runs++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t pos = (size_t)(x % len);
        uint8_t old = buf[pos];
        buf[pos] = k % 2 ? (uint8_t)(old ^ (1u << (x >> 60 & 7))) : vals[(x >> 32) % sizeof vals];
        target(buf, len);
        buf[pos] = old;
    }
    free(buf);
    return runs;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR (with manifest/ and read/ inside)\n", argv[0]);
        return 2;
    }
    static const char *const subs[2] = { "manifest", "read" };
    int (*targets[2])(const uint8_t *, size_t) = { fuzz_manifest, fuzz_read };
    long files = 0, runs = 0;
    for (int t = 0; t < 2; t++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", argv[1], subs[t]);
        DIR *d = opendir(dir);
        if (!d) {
            fprintf(stderr, "fuzz replay: cannot open %s\n", dir);
            return 1;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char path[8200];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            size_t len;
            uint8_t *data = ckpt_test_slurp(path, &len);
            if (!data) {
                fprintf(stderr, "fuzz replay: cannot read %s\n", path);
                closedir(d);
                return 1;
            }
            runs += replay(targets[t], data, len);
            files++;
            free(data);
        }
        closedir(d);
    }
    if (files < 4) {
        fprintf(stderr, "fuzz replay: only %ld corpus files under %s\n", files, argv[1]);
        return 1;
    }
    printf("ckpt.fuzz_replay: %ld files, %ld inputs, no crash\n", files, runs);
    return 0;
}
#endif
