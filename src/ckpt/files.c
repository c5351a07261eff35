/* Checkpoint files: shards, atomic commit, `latest`, keep-K pruning, resolving a directory,
 * and reading tensors back from mapped shards. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_internal.h"
#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/timeutil.h"

/* ---------------------------------------------------------------- directories */

pt_status pt_ckpt_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return pt_fail(PT_EIO, "cannot open directory %s: %s", dir, strerror(errno));
    int r = fsync(fd);
    int err = errno;
    close(fd);
    if (r != 0 && err != EINVAL) /* EINVAL: the file system cannot sync directories */
        return pt_fail(PT_EIO, "fsync %s: %s; check the disk", dir, strerror(err));
    return PT_OK;
}

pt_status pt_ckpt_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? PT_OK : pt_fail(PT_EIO, "cannot open %s to remove it: %s", dir, strerror(errno));
    struct dirent *de;
    pt_status st = PT_OK;
    char path[4096];
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) != 0 && st == PT_OK)
            st = pt_fail(PT_EIO, "cannot remove %s: %s", path, strerror(errno));
    }
    closedir(d);
    if (st == PT_OK && rmdir(dir) != 0)
        st = pt_fail(PT_EIO, "cannot remove %s: %s", dir, strerror(errno));
    return st;
}

/* ---------------------------------------------------------------- shards */

static pt_status write_all(int fd, const void *buf, size_t n, const char *path)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return pt_fail(PT_EIO, "write %s: %s; check free space", path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return PT_OK;
}

pt_status pt_ckpt_shard_create(const char *root, const char *path, int rank, int *fd)
{
    int recycled = 0;
    if (root) {
        char spare[4200], name[32];
        pt_ckpt_shard_name(rank, name, sizeof name);
        snprintf(spare, sizeof spare, "%s/%s/%s", root, PT_CKPT_RECYCLE_DIR, name);
        recycled = rename(spare, path) == 0; /* missing (the first saves): a new file */
    }
    *fd = open(path, O_WRONLY | O_CREAT | (recycled ? 0 : O_TRUNC) | O_CLOEXEC, 0644);
    if (*fd < 0)
        return pt_fail(PT_EIO, "cannot create %s: %s", path, strerror(errno));
    uint8_t hdr[PT_CKPT_SHARD_HEADER_BYTES];
    memcpy(hdr, PT_CKPT_SHARD_MAGIC, 8);
    uint32_t v = PT_CKPT_SHARD_VERSION, r = (uint32_t)rank;
    memcpy(hdr + 8, &v, 4);
    memcpy(hdr + 12, &r, 4);
    pt_status st = write_all(*fd, hdr, sizeof hdr, path);
    if (st != PT_OK) {
        close(*fd);
        *fd = -1;
    }
    return st;
}

pt_status pt_ckpt_shard_finish(int fd, const char *path, uint64_t size)
{
    if (ftruncate(fd, (off_t)size) != 0) {
        pt_status st = pt_fail(PT_EIO, "truncate %s to %llu bytes: %s", path, (unsigned long long)size, strerror(errno));
        close(fd);
        return st;
    }
    return pt_ckpt_file_finish(fd, path);
}

pt_status pt_ckpt_file_finish(int fd, const char *path)
{
    pt_status st = PT_OK;
    if (fsync(fd) != 0)
        st = pt_fail(PT_EIO, "fsync %s: %s; check the disk", path, strerror(errno));
    if (close(fd) != 0 && st == PT_OK)
        st = pt_fail(PT_EIO, "close %s: %s", path, strerror(errno));
    return st;
}

static _Thread_local double shard_encode_s, shard_write_s;

void pt_ckpt_shard_times(double *encode_s, double *write_s)
{
    *encode_s = shard_encode_s;
    *write_s = shard_write_s;
    shard_encode_s = shard_write_s = 0;
}

pt_status pt_ckpt_shard_append(pt_ckpt_codec *c, int fd, const char *path, int rank, int n, const pt_ckpt_src *src,
                               pt_ckpt_entry *e, uint64_t *offset)
{
    double enc_s, wr_s;
    PT_CHECK(pt_ckpt_encode_write(c, fd, path, n, src, e, offset, &enc_s, &wr_s));
    for (int i = 0; i < n; i++)
        e[i].rank = rank;
    shard_encode_s += enc_s;
    shard_write_s += wr_s;
    return PT_OK;
}

/* ---------------------------------------------------------------- listing and resolving */

/* Parses "step_NNNNNN" (digits only, no suffix) into *step. */
static int parse_step_name(const char *s, int64_t *step)
{
    if (strncmp(s, "step_", 5) != 0 || !s[5])
        return 0;
    int64_t v = 0;
    for (const char *p = s + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > (int64_t)1 << 50)
            return 0;
        v = v * 10 + (*p - '0');
    }
    *step = v;
    return 1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

pt_status pt_ckpt_list(const char *root, int64_t **steps, int *n)
{
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(root);
    if (!d)
        return pt_fail(PT_EIO, "cannot open checkpoint directory %s: %s", root, strerror(errno));
    int cap = 0, cnt = 0;
    int64_t *v = NULL;
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d))) {
        int64_t s;
        if (!parse_step_name(de->d_name, &s))
            continue;
        snprintf(path, sizeof path, "%s/%s/manifest.json", root, de->d_name);
        if (access(path, R_OK) != 0)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                free(v);
                closedir(d);
                return pt_fail(PT_ENOMEM, "checkpoint: out of memory listing %s", root);
            }
            v = nv;
        }
        v[cnt++] = s;
    }
    closedir(d);
    if (cnt)
        qsort(v, (size_t)cnt, sizeof *v, cmp_i64);
    *steps = v;
    *n = cnt;
    return PT_OK;
}

pt_status pt_ckpt_check_step(const char *step_dir)
{
    pt_ckpt_manifest *m;
    PT_CHECK(pt_ckpt_manifest_read(step_dir, &m));
    pt_status st = PT_OK;
    for (int r = 0; r < m->n_ranks && st == PT_OK; r++) {
        uint64_t need = PT_CKPT_SHARD_HEADER_BYTES;
        int used = 0;
        for (int i = 0; i < m->n_entries; i++)
            if (m->entries[i].rank == r) {
                uint64_t end = m->entries[i].offset + m->entries[i].stored_bytes;
                need = end > need ? end : need;
                used = 1;
            }
        char name[32], path[4096];
        pt_ckpt_shard_name(r, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", step_dir, name);
        struct stat sb;
        if (stat(path, &sb) != 0)
            st = pt_fail(PT_EFORMAT, "%s: %s; the checkpoint is incomplete", path, strerror(errno));
        else if (used && (uint64_t)sb.st_size < need)
            st = pt_fail(PT_EFORMAT, "%s is %lld bytes but the manifest needs %llu; the file is truncated", path,
                         (long long)sb.st_size, (unsigned long long)need);
    }
    pt_ckpt_manifest_destroy(m);
    return st;
}

int64_t pt_ckpt_resume_step(const char *dir)
{
    char step_dir[4096];
    int64_t step;
    if (!dir || pt_ckpt_resolve(dir, step_dir, sizeof step_dir, NULL, 0) != PT_OK) {
        pt_clear_error();
        return -1;
    }
    const char *b = strrchr(step_dir, '/');
    return parse_step_name(b ? b + 1 : step_dir, &step) ? step : -1;
}

pt_status pt_ckpt_lock(const char *root, int *fd)
{
    *fd = -1;
    PT_CHECK(pt_mkdirs(root));
    char path[4096];
    snprintf(path, sizeof path, "%s/.lock", root);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0)
        return pt_fail(PT_EIO, "cannot open %s: %s", path, strerror(errno));
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char who[256] = "";
        ssize_t n = pread(f, who, sizeof who - 1, 0);
        who[n > 0 ? n : 0] = 0;
        who[strcspn(who, "\r\n")] = 0;
        close(f);
        if (e == EWOULDBLOCK)
            return pt_fail(PT_EINVAL, "checkpoint directory %s is in use by another training job (%s); give this run "
                                      "another --ckpt-dir, or wait for that job to end",
                           root, who[0] ? who : "holder unknown");
        return pt_fail(PT_EIO, "cannot lock %s: %s", path, strerror(e));
    }
    char host[128] = "?", line[256];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    int len = snprintf(line, sizeof line, "pid %ld on %s\n", (long)getpid(), host);
    if (ftruncate(f, 0) != 0 || pwrite(f, line, (size_t)len, 0) != len) {
        int e = errno;
        close(f);
        return pt_fail(PT_EIO, "cannot write %s: %s", path, strerror(e));
    }
    *fd = f;
    return PT_OK;
}

void pt_ckpt_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* drops the flock */
}

pt_status pt_ckpt_resolve(const char *dir, char *step_dir, size_t cap, char *note, size_t note_cap)
{
    if (note && note_cap)
        note[0] = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    if (access(path, F_OK) == 0) { /* a step directory itself */
        if (snprintf(step_dir, cap, "%s", dir) >= (int)cap)
            return pt_fail(PT_EINVAL, "checkpoint path is too long: %.80s...", dir);
        return PT_OK;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return pt_fail(PT_EIO, "%s: no such checkpoint directory; give the directory a run saved its checkpoints in "
                                "(a run's RUN_DIR/ckpt, or the folder its train command named)", dir);
    /* `latest` */
    char latest[256] = "", why[1200] = "";
    snprintf(path, sizeof path, "%s/latest", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(latest, sizeof latest, f))
            latest[0] = 0;
        fclose(f);
        latest[strcspn(latest, "\r\n")] = 0;
        int64_t s;
        if (!parse_step_name(latest, &s)) {
            snprintf(why, sizeof why, "%s/latest does not name a step directory", dir);
        } else {
            snprintf(path, sizeof path, "%s/%s", dir, latest);
            if (pt_ckpt_check_step(path) == PT_OK) {
                if (snprintf(step_dir, cap, "%s", path) >= (int)cap)
                    return pt_fail(PT_EINVAL, "checkpoint path is too long: %.80s...", path);
                return PT_OK;
            }
            snprintf(why, sizeof why, "latest (%s) is not usable: %s", latest, pt_last_error());
        }
    } else {
        snprintf(why, sizeof why, "%s/latest is missing", dir);
    }
    /* fall back to the newest complete checkpoint */
    int64_t *steps;
    int n;
    PT_CHECK(pt_ckpt_list(dir, &steps, &n));
    pt_status st = PT_EFORMAT;
    for (int i = n - 1; i >= 0 && st != PT_OK; i--) {
        char name[64];
        pt_ckpt_step_name(steps[i], name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (strcmp(name, latest) == 0 || pt_ckpt_check_step(path) != PT_OK)
            continue;
        if (snprintf(step_dir, cap, "%s", path) >= (int)cap) {
            free(steps);
            return pt_fail(PT_EINVAL, "checkpoint path is too long: %.80s...", path);
        }
        if (note && note_cap)
            snprintf(note, note_cap, "checkpoint: %s; using %s, the newest complete checkpoint", why, name);
        st = PT_OK;
    }
    if (st != PT_OK)
        st = pt_fail(PT_EFORMAT, "%s: no %scheckpoint (%s); start without --resume", dir, n ? "complete " : "", why);
    free(steps);
    return st;
}

/* ---------------------------------------------------------------- commit */

static pt_status write_latest(const char *root, const char *name)
{
    char fin[4096], line[128];
    snprintf(fin, sizeof fin, "%s/latest", root);
    int len = snprintf(line, sizeof line, "%s\n", name);
    PT_CHECK(pt_write_file_atomic(fin, line, (size_t)len));
    return pt_ckpt_fsync_dir(root);
}

/* Moves the shards of a pruned step directory (its manifest already gone) to root/recycle/, in
 * place of the ones there: the next save overwrites them instead of allocating new files. The
 * moved files are no part of any checkpoint any more. */
static pt_status recycle_shards(const char *root, const char *step_dir)
{
    char dir[4200], from[4400], to[4400], name[32];
    snprintf(dir, sizeof dir, "%s/%s", root, PT_CKPT_RECYCLE_DIR);
    PT_CHECK(pt_ckpt_remove_dir(dir)); /* shards of ranks a later run may not have */
    PT_CHECK(pt_mkdirs(dir));
    for (int r = 0;; r++) {
        pt_ckpt_shard_name(r, name, sizeof name);
        snprintf(from, sizeof from, "%s/%s", step_dir, name);
        snprintf(to, sizeof to, "%s/%s", dir, name);
        if (rename(from, to) != 0) {
            if (errno == ENOENT)
                return PT_OK;
            return pt_fail(PT_EIO, "rename %s -> %s: %s", from, to, strerror(errno));
        }
    }
}

static pt_status prune(const char *root, int keep_last, int64_t keep_step)
{
    if (keep_last <= 0)
        return PT_OK;
    int64_t *steps;
    int n;
    PT_CHECK(pt_ckpt_list(root, &steps, &n));
    pt_status st = PT_OK;
    int excess = n - keep_last;
    for (int i = 0; i < n && excess > 0 && st == PT_OK; i++) {
        if (steps[i] == keep_step)
            continue;
        char name[64], path[4096];
        pt_ckpt_step_name(steps[i], name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", root, name);
        /* manifest first: a half-removed directory is then not mistaken for a complete one */
        char man[4200];
        snprintf(man, sizeof man, "%s/manifest.json", path);
        if (unlink(man) != 0)
            st = pt_fail(PT_EIO, "cannot remove %s: %s", man, strerror(errno));
        else if (excess == 1)
            st = recycle_shards(root, path);
        if (st == PT_OK)
            st = pt_ckpt_remove_dir(path);
        excess--;
    }
    free(steps);
    return st;
}

pt_status pt_ckpt_keep_only(const char *root, int64_t step)
{
    DIR *d = opendir(root);
    if (!d)
        return errno == ENOENT ? PT_OK : pt_fail(PT_EIO, "cannot open %s: %s", root, strerror(errno));
    pt_status st = PT_OK;
    struct dirent *de;
    char name[256], path[4096], man[4200];
    while ((de = readdir(d)) && st == PT_OK) {
        size_t len = strlen(de->d_name);
        if (len >= sizeof name)
            continue;
        memcpy(name, de->d_name, len + 1);
        if (len > 4 && strcmp(name + len - 4, ".tmp") == 0)
            name[len - 4] = 0; /* a write that never finished */
        int64_t s;
        if (!parse_step_name(name, &s) || (s == step && strcmp(name, de->d_name) == 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", root, de->d_name);
        snprintf(man, sizeof man, "%s/manifest.json", path);
        if (unlink(man) != 0 && errno != ENOENT)
            st = pt_fail(PT_EIO, "cannot remove %s: %s", man, strerror(errno));
        else
            st = pt_ckpt_remove_dir(path);
    }
    closedir(d);
    return st;
}

pt_status pt_ckpt_commit(const char *root, const char *tmp_dir, const pt_ckpt_manifest *m, int keep_last,
                         int refuse_existing, char *final_dir, size_t final_cap)
{
    char name[64], fin[4096], aside[4200], path[4200];
    pt_ckpt_step_name(m->step, name, sizeof name);
    snprintf(fin, sizeof fin, "%s/%s", root, name);
    cJSON *j;
    PT_CHECK(pt_ckpt_manifest_to_json(m, &j));
    snprintf(path, sizeof path, "%s/manifest.json", tmp_dir);
    pt_status st = pt_json_write_file(path, j, 0);
    cJSON_Delete(j);
    PT_CHECK(st);
    PT_CHECK(pt_ckpt_fsync_dir(tmp_dir));
    struct stat sb;
    int existed = stat(fin, &sb) == 0;
    if (existed) {
        if (refuse_existing)
            return pt_fail(PT_EINVAL, "%s already exists; remove it or choose another directory", fin);
        /* never overwrite in place: move the old one aside, remove it once the new one is in place */
        snprintf(aside, sizeof aside, "%s.replaced", fin);
        PT_CHECK(pt_ckpt_remove_dir(aside));
        if (rename(fin, aside) != 0)
            return pt_fail(PT_EIO, "rename %s -> %s: %s", fin, aside, strerror(errno));
    }
    if (rename(tmp_dir, fin) != 0)
        return pt_fail(PT_EIO, "rename %s -> %s: %s", tmp_dir, fin, strerror(errno));
    PT_CHECK(pt_ckpt_fsync_dir(root));
    PT_CHECK(write_latest(root, name));
    if (existed)
        PT_CHECK(pt_ckpt_remove_dir(aside));
    if (final_dir && snprintf(final_dir, final_cap, "%s", fin) >= (int)final_cap)
        return pt_fail(PT_EINVAL, "checkpoint path is too long: %.80s...", fin);
    return prune(root, keep_last, m->step);
}

/* ---------------------------------------------------------------- writing from host tensors */

pt_status pt_ckpt_write(const char *root, const pt_ckpt_src *t, int n, const pt_train_state *st_in,
                        const pt_ckpt_codec_opts *o, int keep_last)
{
    char name[64], tmp[4096], shard[4200];
    pt_ckpt_step_name(st_in->step, name, sizeof name);
    PT_CHECK(pt_mkdirs(root));
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", root, name);
    PT_CHECK(pt_ckpt_remove_dir(tmp)); /* left over from a crash */
    PT_CHECK(pt_mkdirs(tmp));
    snprintf(shard, sizeof shard, "%s/shard-0.ptz", tmp);

    pt_status st = PT_OK;
    pt_ckpt_codec *c = NULL;
    int fd = -1;
    pt_ckpt_entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e)
        return pt_fail(PT_ENOMEM, "checkpoint: out of memory");
    PT_TRY(pt_ckpt_codec_create(o, &c), done);
    PT_TRY(pt_ckpt_shard_create(root, shard, 0, &fd), done);
    uint64_t off = PT_CKPT_SHARD_HEADER_BYTES;
    PT_TRY(pt_ckpt_shard_append(c, fd, shard, 0, n, t, e, &off), done);
    st = pt_ckpt_shard_finish(fd, shard, off);
    fd = -1;
    if (st != PT_OK)
        goto done;
    pt_ckpt_manifest m = { .version = pt_ckpt_format_for(e, n),
                           .step = st_in->step,
                           .data_step = st_in->data_step,
                           .seed = st_in->seed,
                           .n_ranks = 1,
                           .run_json = (char *)(st_in->run_json ? st_in->run_json : "{}"),
                           .n_entries = n,
                           .entries = e };
    st = pt_ckpt_commit(root, tmp, &m, keep_last, 1, NULL, 0);
done:
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < n; i++)
        pt_ckpt_entry_clear(&e[i]);
    free(e);
    pt_ckpt_codec_destroy(c);
    return st;
}

/* ---------------------------------------------------------------- reader */

typedef struct mapped_shard {
    int tried;
    const uint8_t *base;
    size_t size;
} mapped_shard;

struct pt_ckpt_reader {
    char dir[4096];
    pt_ckpt_manifest *m;
    pt_ckpt_codec *codec;
    mapped_shard *shards; /* [n_ranks] */
};

pt_status pt_ckpt_reader_open(const char *step_dir, int n_threads, pt_ckpt_reader **out)
{
    *out = NULL;
    pt_ckpt_reader *r = calloc(1, sizeof *r);
    if (!r)
        return pt_fail(PT_ENOMEM, "checkpoint: out of memory");
    snprintf(r->dir, sizeof r->dir, "%s", step_dir);
    pt_status st;
    PT_TRY(pt_ckpt_manifest_read(step_dir, &r->m), fail);
    uint64_t be = PT_CKPT_DEFAULT_BLOCK_ELEMS;
    for (int i = 0; i < r->m->n_entries; i++)
        if (r->m->entries[i].block_elems > be)
            be = r->m->entries[i].block_elems;
    pt_ckpt_codec_opts o = pt_ckpt_codec_default(1, n_threads);
    o.block_elems = be;
    PT_TRY(pt_ckpt_codec_create(&o, &r->codec), fail);
    r->shards = calloc((size_t)r->m->n_ranks, sizeof *r->shards);
    if (!r->shards) {
        st = pt_fail(PT_ENOMEM, "checkpoint: out of memory");
        goto fail;
    }
    *out = r;
    return PT_OK;
fail:
    pt_ckpt_reader_close(r);
    return st;
}

void pt_ckpt_reader_close(pt_ckpt_reader *r)
{
    if (!r)
        return;
    if (r->shards && r->m)
        for (int i = 0; i < r->m->n_ranks; i++)
            if (r->shards[i].base)
                munmap((void *)r->shards[i].base, r->shards[i].size);
    free(r->shards);
    pt_ckpt_codec_destroy(r->codec);
    pt_ckpt_manifest_destroy(r->m);
    free(r);
}

const pt_ckpt_manifest *pt_ckpt_reader_manifest(const pt_ckpt_reader *r)
{
    return r->m;
}

static pt_status map_shard(pt_ckpt_reader *r, int rank, const char *path)
{
    mapped_shard *s = &r->shards[rank];
    if (s->tried)
        return s->base ? PT_OK : pt_fail(PT_EFORMAT, "%s could not be opened earlier", path);
    s->tried = 1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pt_fail(PT_EFORMAT, "%s: %s; the checkpoint is incomplete", path, strerror(errno));
    struct stat sb;
    pt_status st = PT_OK;
    if (fstat(fd, &sb) != 0) {
        st = pt_fail(PT_EIO, "%s: %s", path, strerror(errno));
    } else if ((uint64_t)sb.st_size < PT_CKPT_SHARD_HEADER_BYTES) {
        st = pt_fail(PT_EFORMAT, "%s is %lld bytes, shorter than its header; the file is truncated", path,
                     (long long)sb.st_size);
    } else {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            st = pt_fail(PT_EIO, "mmap %s: %s", path, strerror(errno));
        } else {
            s->base = p;
            s->size = (size_t)sb.st_size;
            uint32_t v, rk;
            memcpy(&v, s->base + 8, 4);
            memcpy(&rk, s->base + 12, 4);
            if (memcmp(s->base, PT_CKPT_SHARD_MAGIC, 8) != 0)
                st = pt_fail(PT_EFORMAT, "%s is not a pipetrain shard (bad magic); the checkpoint is damaged", path);
            else if (v == 0 || v > PT_CKPT_SHARD_VERSION) /* format 3 changed the manifest only */
                st = pt_fail(PT_EFORMAT, "%s: format %u is newer than this build (%d); upgrade pipetrain", path, v,
                             PT_CKPT_SHARD_VERSION);
            else if (rk != (uint32_t)rank)
                st = pt_fail(PT_EFORMAT, "%s says it is rank %u's shard; the checkpoint is damaged", path, rk);
            else
                madvise(p, s->size, MADV_WILLNEED);
        }
    }
    close(fd);
    return st;
}

pt_status pt_ckpt_reader_read(pt_ckpt_reader *r, int n, const pt_ckpt_entry *const *e, void *const *dst)
{
    const uint8_t **src = calloc((size_t)n + 1, sizeof *src);
    size_t *len = calloc((size_t)n + 1, sizeof *len);
    pt_status st = PT_OK;
    if (!src || !len) {
        st = pt_fail(PT_ENOMEM, "checkpoint: out of memory");
        goto done;
    }
    char name[32], path[4200];
    for (int i = 0; i < n; i++) {
        pt_ckpt_shard_name(e[i]->rank, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", r->dir, name);
        if (e[i]->rank < 0 || e[i]->rank >= r->m->n_ranks) {
            st = pt_fail(PT_EINVAL, "%s: tensor %s is not from this checkpoint", path, e[i]->name);
            goto done;
        }
        PT_TRY(map_shard(r, e[i]->rank, path), done);
        const mapped_shard *s = &r->shards[e[i]->rank];
        if (e[i]->offset > s->size || e[i]->stored_bytes > s->size - e[i]->offset) {
            st = pt_fail(PT_EFORMAT, "%s is %zu bytes but tensor %s (%s) needs bytes [%llu, %llu); the file is truncated",
                         path, s->size, e[i]->name, pt_ckpt_kind_name(e[i]->kind), (unsigned long long)e[i]->offset,
                         (unsigned long long)(e[i]->offset + e[i]->stored_bytes));
            goto done;
        }
        src[i] = s->base + e[i]->offset;
        len[i] = (size_t)e[i]->stored_bytes;
    }
    int failed;
    st = pt_ckpt_decode_at(r->codec, n, e, src, len, dst, &failed);
    if (st != PT_OK) { /* name the file: the codec only knows the tensor */
        if (failed >= 0) {
            pt_ckpt_shard_name(e[failed]->rank, name, sizeof name);
            pt_fail_wrap(st, "%s/%s: tensor %s (%s)", r->dir, name, e[failed]->name, pt_ckpt_kind_name(e[failed]->kind));
        } else {
            pt_fail_wrap(st, "%s", r->dir);
        }
    }
done:
    free(src);
    free(len);
    return st;
}
