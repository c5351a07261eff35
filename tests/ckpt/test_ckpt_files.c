/* ckpt.files: checkpoint directories on disk.
 *  - write + read back bit-exact; keep-K pruning; `latest` names the newest; the newest pruned
 *    shard is kept in recycle/ and overwritten by the next write
 *  - a step_N.tmp directory is never used, even when it holds a manifest
 *  - `latest` damaged or missing: the newest complete checkpoint is used and the note says so
 *  - every single-byte change of a shard file, and every truncation, is an error naming the
 *    shard file and the tensor
 *  - manifests: a newer version, a missing field, a bad shard name are one-line errors
 *  - the shard writer (encode and write at once, many blocks over 1 and 4 threads) writes exactly
 *    the bytes the in-memory encoder makes, the tensors back to back; a write failing half-way
 *    stops every thread and is an error naming the shard
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipetrain/ckpt.h"

#include "ckpt_test.h"


enum { NT = 4 };
static float t0[3000], t1[7], t2[64 * 33], t3[1];
static const char *names[NT] = { "blocks.0.mlp.fc.weight", "lnf.bias", "wpe.weight", "scalar" };

static int small; /* damage tests: fewer values, so that flipping every byte stays quick */

static void make_src(pt_ckpt_src *s, float salt)
{
    uint32_t x = 12345;
    float *d[NT] = { t0, t1, t2, t3 };
    size_t n[NT] = { 3000, 7, 64 * 33, 1 };
    for (int i = 0; i < NT; i++)
        for (size_t k = 0; k < n[i]; k++) {
            x = x * 1664525u + 1013904223u;
            d[i][k] = salt + ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.04f;
        }
    s[0] = (pt_ckpt_src){ names[0], PT_CKPT_PARAM, PT_CKPT_F32, 2, { small ? 3 : 30, 100 }, t0 };
    s[1] = (pt_ckpt_src){ names[1], PT_CKPT_ADAM_M, PT_CKPT_F32, 1, { 7 }, t1 };
    s[2] = (pt_ckpt_src){ names[2], PT_CKPT_ADAM_V, PT_CKPT_F32, 2, { small ? 4 : 64, 33 }, t2 };
    s[3] = (pt_ckpt_src){ names[3], PT_CKPT_PARAM, PT_CKPT_F32, 0, { 0 }, t3 };
}

static void run(const char *cmd)
{
    if (system(cmd) != 0)
        fprintf(stderr, "warning: '%s' failed\n", cmd);
}

static pt_status write_step(const char *root, int64_t step, int keep, float salt)
{
    pt_ckpt_src s[NT];
    make_src(s, salt);
    pt_train_state st = { .step = step, .data_step = step + 1, .seed = 0xFFFFFFFFFFFFFFF1ULL,
                          .run_json = "{\"model\":\"test\",\"lr\":0.001}" };
    pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 2);
    o.block_elems = 1024;
    return pt_ckpt_write(root, s, NT, &st, &o, keep);
}

/* Reads every tensor of step_dir; returns the status and compares with salt's values. */
static int read_threads = 2;

static pt_status read_all(const char *step_dir, float salt, int *same)
{
    pt_ckpt_reader *r;
    PT_CHECK(pt_ckpt_reader_open(step_dir, read_threads, &r));
    const pt_ckpt_manifest *m = pt_ckpt_reader_manifest(r);
    pt_ckpt_src want[NT];
    make_src(want, salt);
    static float buf[NT][3000];
    const pt_ckpt_entry *e[NT];
    void *dst[NT];
    pt_status st = PT_OK;
    for (int i = 0; i < NT; i++) {
        e[i] = pt_ckpt_manifest_find(m, want[i].name, want[i].kind);
        if (!e[i]) {
            st = pt_fail(PT_EFORMAT, "missing %s", want[i].name);
            goto done;
        }
        dst[i] = buf[i];
    }
    st = pt_ckpt_reader_read(r, NT, e, dst);
    *same = 1;
    for (int i = 0; i < NT && st == PT_OK; i++)
        *same &= memcmp(buf[i], want[i].data, (size_t)e[i]->raw_bytes) == 0;
done:
    pt_ckpt_reader_close(r);
    return st;
}

static long inode_of(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_ino : -1;
}

static void test_write_read_keep(const char *root)
{
    char path[600];
    long first_inode = -1;
    for (int s = 1; s <= 4; s++) {
        CHECK(write_step(root, s * 10, 2, (float)s) == PT_OK, "write step %d: %s", s, pt_last_error());
        if (s == 1) {
            snprintf(path, sizeof path, "%s/step_000010/shard-0.ptz", root);
            first_inode = inode_of(path);
        }
    }
    /* writing 30 pruned 10, whose shard went to recycle/; writing 40 overwrote it (and pruned 20) */
    snprintf(path, sizeof path, "%s/step_000040/shard-0.ptz", root);
    CHECK(first_inode > 0 && inode_of(path) == first_inode, "step 40's shard is not step 10's file recycled");
    snprintf(path, sizeof path, "%s/recycle/shard-0.ptz", root);
    CHECK(inode_of(path) > 0, "pruning step 20 left no %s", path);
    int64_t *steps;
    int n;
    CHECK(pt_ckpt_list(root, &steps, &n) == PT_OK, "list: %s", pt_last_error());
    CHECK(n == 2 && steps[0] == 30 && steps[1] == 40, "keep 2: %d left", n);
    free(steps);
    CHECK(write_step(root, 40, 2, 9.0f) == PT_EINVAL, "pt_ckpt_write must refuse to replace step 40");
    char dir[512], note[512];
    CHECK(pt_ckpt_resolve(root, dir, sizeof dir, note, sizeof note) == PT_OK, "resolve: %s", pt_last_error());
    CHECK(strstr(dir, "step_000040") && note[0] == 0, "resolved %s (note '%s')", dir, note);
    int same = 0;
    CHECK(read_all(dir, 4.0f, &same) == PT_OK && same, "read back step 40: %s", pt_last_error());
    pt_ckpt_manifest *m;
    CHECK(pt_ckpt_manifest_read(dir, &m) == PT_OK, "manifest: %s", pt_last_error());
    if (m) {
        CHECK(m->step == 40 && m->data_step == 41 && m->seed == 0xFFFFFFFFFFFFFFF1ULL && m->n_ranks == 1,
              "train state fields");
        CHECK(strstr(m->run_json, "\"lr\":0.001") != NULL, "run json kept: %s", m->run_json);
        pt_ckpt_manifest_destroy(m);
    }
}

static void test_tmp_and_fallback(const char *root)
{
    char cmd[2048], dir[512], note[512];
    /* a crashed save of step 50 left a .tmp with a complete-looking manifest */
    snprintf(cmd, sizeof cmd, "cp -r %s/step_000040 %s/step_000050.tmp", root, root);
    run(cmd);
    snprintf(cmd, sizeof cmd, "rm -f %s/latest", root);
    run(cmd);
    CHECK(pt_ckpt_resolve(root, dir, sizeof dir, note, sizeof note) == PT_OK, "resolve: %s", pt_last_error());
    CHECK(strstr(dir, "step_000040") != NULL, "missing latest: resolved %s", dir);
    CHECK(strstr(note, "latest is missing") != NULL, "note: %s", note);
    /* latest names step 40, whose shard is truncated: fall back to 30 and say why */
    snprintf(cmd, sizeof cmd, "echo step_000040 > %s/latest && truncate -s 100 %s/step_000040/shard-0.ptz", root, root);
    run(cmd);
    CHECK(pt_ckpt_resolve(root, dir, sizeof dir, note, sizeof note) == PT_OK, "resolve: %s", pt_last_error());
    CHECK(strstr(dir, "step_000030") != NULL, "damaged latest: resolved %s", dir);
    CHECK(strstr(note, "step_000040") && strstr(note, "truncated") && strstr(note, "step_000030"), "note: %s", note);
    /* a manifest that is not JSON */
    snprintf(cmd, sizeof cmd, "echo '{\"format\":' > %s/step_000030/manifest.json", root);
    run(cmd);
    CHECK(pt_ckpt_resolve(root, dir, sizeof dir, note, sizeof note) == PT_EFORMAT, "nothing usable must fail");
    CHECK(strstr(pt_last_error(), "no complete checkpoint") != NULL, "message: %s", pt_last_error());
    snprintf(cmd, sizeof cmd, "rm -rf %s/step_000050.tmp", root);
    run(cmd);
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void test_shard_damage(const char *root)
{
    small = 1;
    read_threads = 1; /* thousands of reads: no thread start-up each */
    CHECK(write_step(root, 7, 0, 0.5f) == PT_OK, "write: %s", pt_last_error());
    char dir[512], shard[600], cmd[2000];
    snprintf(dir, sizeof dir, "%s/step_000007", root);
    snprintf(shard, sizeof shard, "%s/shard-0.ptz", dir);
    long size = file_size(shard);
    CHECK(size > 100, "shard size %ld", size);
    int fd = open(shard, O_RDWR);
    int undetected = 0, unnamed = 0;
    for (long i = 0; i < size; i++) {
        uint8_t b, f;
        if (pread(fd, &b, 1, i) != 1)
            break;
        f = b ^ (uint8_t)(1u << (i % 8));
        if (pwrite(fd, &f, 1, i) != 1)
            break;
        int same = 0;
        pt_status st = read_all(dir, 0.5f, &same);
        if (st == PT_OK)
            undetected++;
        else if (!strstr(pt_last_error(), "shard-0.ptz"))
            unnamed++;
        if (pwrite(fd, &b, 1, i) != 1)
            break;
    }
    close(fd);
    CHECK(undetected == 0, "%d of %ld damaged bytes were not detected", undetected, size);
    CHECK(unnamed == 0, "%d errors did not name the shard file", unnamed);
    int same = 0;
    CHECK(read_all(dir, 0.5f, &same) == PT_OK && same, "restored shard reads: %s", pt_last_error());
    for (long cut = 0; cut < size; cut += 1 + cut / 4) {
        snprintf(cmd, sizeof cmd, "cp %s %s.bak && truncate -s %ld %s", shard, shard, cut, shard);
        run(cmd);
        pt_status st = read_all(dir, 0.5f, &same);
        CHECK(st == PT_EFORMAT, "truncated to %ld: status %d", cut, (int)st);
        CHECK(cut < 16 || strstr(pt_last_error(), "truncated"), "truncated to %ld: %s", cut, pt_last_error());
        snprintf(cmd, sizeof cmd, "mv %s.bak %s", shard, shard);
        run(cmd);
    }
    CHECK(read_all(dir, 0.5f, &same) == PT_OK && same, "restored shard reads: %s", pt_last_error());
    small = 0;
    read_threads = 2;
}

static void test_manifest_errors(void)
{
    pt_ckpt_manifest *m;
    const char *newer = "{\"format\":\"pipetrain-checkpoint\",\"version\":99,\"step\":1,\"data_step\":1,\"seed\":\"1\","
                        "\"n_ranks\":1,\"run\":{},\"tensors\":[]}";
    CHECK(pt_ckpt_manifest_parse(newer, strlen(newer), "m.json", &m) == PT_EFORMAT &&
              strstr(pt_last_error(), "newer than this build"),
          "version 99: %s", pt_last_error());
    const char *ok = "{\"format\":\"pipetrain-checkpoint\",\"version\":1,\"step\":1,\"data_step\":1,\"seed\":\"1\","
                     "\"n_ranks\":1,\"run\":{},\"tensors\":[]}";
    CHECK(pt_ckpt_manifest_parse(ok, strlen(ok), "m.json", &m) == PT_OK, "empty manifest: %s", pt_last_error());
    pt_ckpt_manifest_destroy(m);
    const char *nostep = "{\"format\":\"pipetrain-checkpoint\",\"version\":1,\"data_step\":1,\"seed\":\"1\","
                         "\"n_ranks\":1,\"run\":{},\"tensors\":[]}";
    CHECK(pt_ckpt_manifest_parse(nostep, strlen(nostep), "m.json", &m) == PT_EFORMAT &&
              strstr(pt_last_error(), "'step'"),
          "missing step: %s", pt_last_error());
    const char *path = "{\"format\":\"pipetrain-checkpoint\",\"version\":1,\"step\":1,\"data_step\":1,\"seed\":\"1\","
                       "\"n_ranks\":1,\"run\":{},\"tensors\":[{\"name\":\"a\",\"kind\":\"param\",\"dtype\":\"f32\","
                       "\"shape\":[1],\"shard\":\"../shard-0.ptz\",\"offset\":16,\"bytes\":4,\"raw_bytes\":4,"
                       "\"transform\":\"none\",\"block_elems\":1,\"blocks\":[{\"xxh64\":\"0000000000000000\","
                       "\"stored_xxh64\":\"0000000000000000\",\"codecs\":\"r\",\"sizes\":[4]}]}]}";
    CHECK(pt_ckpt_manifest_parse(path, strlen(path), "m.json", &m) == PT_EFORMAT &&
              strstr(pt_last_error(), "bad shard name"),
          "shard path: %s", pt_last_error());
}

/* pt_ckpt_write's shard (blocks written by whichever thread completes the in-order prefix) must
 * hold the in-memory encoder's bytes, tensor after tensor; an empty tensor included. */
static void test_pipeline(const char *root)
{
    enum { N = 5 };
    static float big[41 * 97];
    static uint16_t half[2777];
    uint32_t x = 99;
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        x = x * 1664525u + 1013904223u;
        big[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * (i % 3 ? 0.02f : 3.0f);
    }
    for (size_t i = 0; i < sizeof half / sizeof half[0]; i++)
        half[i] = (uint16_t)(0x3c00 + (i * 37) % 700);
    pt_ckpt_src s[N] = {
        { "big", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 41, 97 }, big },
        { "empty", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 0, 5 }, big },
        { "half", PT_CKPT_ADAM_M, PT_CKPT_BF16, 1, { 2777 }, half },
        { "one", PT_CKPT_ADAM_V, PT_CKPT_F32, 0, { 0 }, big + 5 },
        { "tail", PT_CKPT_ADAM_V, PT_CKPT_F32, 1, { 3001 }, big },
    };
    for (int threads = 1; threads <= 4; threads += 3) {
        pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, threads);
        o.block_elems = 32; /* ~350 blocks: the write slots are reused many times */
        pt_train_state st = { .step = 100 + threads, .data_step = 1, .seed = 1, .run_json = "{}" };
        CHECK(pt_ckpt_write(root, s, N, &st, &o, 0) == PT_OK, "write (%d threads): %s", threads, pt_last_error());
        char dir[512], shard[600];
        snprintf(dir, sizeof dir, "%s/step_%06d", root, 100 + threads);
        snprintf(shard, sizeof shard, "%s/shard-0.ptz", dir);
        pt_ckpt_codec *c = NULL;
        CHECK(pt_ckpt_codec_create(&o, &c) == PT_OK, "codec: %s", pt_last_error());
        pt_ckpt_manifest *m = NULL;
        CHECK(pt_ckpt_manifest_read(dir, &m) == PT_OK, "manifest: %s", pt_last_error());
        FILE *f = fopen(shard, "rb");
        CHECK(f != NULL, "open %s", shard);
        uint64_t off = 16;
        for (int i = 0; c && m && f && i < N; i++) {
            uint64_t numel = 1;
            for (int d = 0; d < s[i].ndim; d++)
                numel *= (uint64_t)s[i].shape[d];
            size_t cap = pt_ckpt_encode_bound(s[i].dtype, numel, o.block_elems);
            uint8_t *mem = malloc(cap + 1), *disk = malloc(cap + 1);
            uint8_t *dst = mem;
            pt_ckpt_entry e;
            CHECK(pt_ckpt_encode(c, 1, &s[i], &dst, &cap, &e) == PT_OK, "encode: %s", pt_last_error());
            const pt_ckpt_entry *me = pt_ckpt_manifest_find(m, s[i].name, s[i].kind);
            CHECK(me && me->offset == off && me->stored_bytes == e.stored_bytes && me->n_blocks == e.n_blocks,
                  "%s (%d threads): offset %llu, %llu bytes; expected %llu, %llu", s[i].name, threads,
                  me ? (unsigned long long)me->offset : 0ULL, me ? (unsigned long long)me->stored_bytes : 0ULL,
                  (unsigned long long)off, (unsigned long long)e.stored_bytes);
            if (me && me->stored_bytes == e.stored_bytes) {
                CHECK(fseek(f, (long)off, SEEK_SET) == 0 && fread(disk, 1, (size_t)e.stored_bytes, f) == e.stored_bytes &&
                          memcmp(disk, mem, (size_t)e.stored_bytes) == 0,
                      "%s (%d threads): the shard holds other bytes than the encoder made", s[i].name, threads);
                for (int64_t b = 0; b < e.n_blocks; b++)
                    CHECK(me->blocks[b].hash == e.blocks[b].hash && me->blocks[b].stored_hash == e.blocks[b].stored_hash,
                          "%s block %lld: checksums differ", s[i].name, (long long)b);
            }
            off += e.stored_bytes;
            pt_ckpt_entry_clear(&e);
            free(mem);
            free(disk);
        }
        if (f) {
            CHECK(fseek(f, 0, SEEK_END) == 0 && (uint64_t)ftell(f) == off, "shard is %ld bytes, tensors end at %llu",
                  ftell(f), (unsigned long long)off);
            fclose(f);
        }
        pt_ckpt_manifest_destroy(m);
        pt_ckpt_codec_destroy(c);
    }
}

/* A write that fails half-way (here: the file size limit) ends every encoding thread, returns an
 * error naming the shard file, and commits nothing. */
static void test_write_error(const char *root)
{
    static float v[50000];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        v[i] = (float)i * 1e-3f;
    pt_ckpt_src s = { "v", PT_CKPT_PARAM, PT_CKPT_F32, 1, { 50000 }, v };
    pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, 4);
    o.block_elems = 256;
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0, "getrlimit");
    lim = old;
    lim.rlim_cur = 64 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN); /* EFBIG instead of the signal */
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    pt_train_state st = { .step = 500, .data_step = 1, .seed = 1, .run_json = "{}" };
    pt_status r = pt_ckpt_write(root, &s, 1, &st, &o, 0);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK(r == PT_EIO && strstr(pt_last_error(), "step_000500.tmp/shard-0.ptz") && strstr(pt_last_error(), "write"),
          "write past the size limit: status %d: %s", (int)r, pt_last_error());
    char path[600];
    snprintf(path, sizeof path, "%s/step_000500", root);
    CHECK(access(path, F_OK) != 0, "a failed write must not commit %s", path);
}

int main(void)
{
    char root[] = "/tmp/pt_ckpt_files_XXXXXX";
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_write_read_keep(root);
    test_tmp_and_fallback(root);
    test_shard_damage(root);
    test_manifest_errors();
    test_pipeline(root);
    test_write_error(root);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    run(cmd);
    if (failures) {
        fprintf(stderr, "ckpt.files: %d failure(s)\n", failures);
        return 1;
    }
    printf("ckpt.files: ok\n");
    return 0;
}
