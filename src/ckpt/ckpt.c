/* The training-loop side of checkpoints: the asynchronous saver (stage on the caller's thread,
 * compress and write on a background thread, commit through the file system so that the
 * background thread never touches comm) and loading by tensor name into any partition. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_internal.h"
#include "pipetrain/comm.h"
#include "pipetrain/data.h"
#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/optim.h"
#include "pipetrain/timeutil.h"

/* A save that is still being written after this long is reported as stuck (a dead disk or
 * a dead rank), never waited on forever. */
#define SAVER_WAIT_TIMEOUT_MS (3600LL * 1000)
#define MARKER_POLL_NS (10LL * 1000 * 1000)


/* One memcpy of the staging copy (host tensors are copied in pieces on several threads). */
typedef struct staging_piece {
    uint8_t *dst;
    const uint8_t *src;
    size_t bytes;
} staging_piece;

#define STAGING_PIECE_BYTES ((size_t)16 << 20)

struct pt_ckpt_saver {
    char dir[2048];
    int keep_last, n_threads;
    pt_ckpt_codec *codec;

    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int has_job; /* a job is waiting for the thread */
    int busy;    /* a job is waiting or running */
    int stop;
    pt_status last_status; /* of the last finished job */
    char last_msg[1024];
    int unreported; /* last_status is an error nobody has returned yet */
    pt_ckpt_save_info info;

    /* the job (owned by the thread while busy) */
    int rank, n_ranks;
    int64_t marker_timeout_ms;
    pt_train_state st;
    char *run_json;
    int n_src, src_cap;
    pt_ckpt_src *src;
    char **names;
    const float **from; /* [src_cap]: where src[i]'s values are in the model's or optimizer's buffer */
    int *chunk;         /* [src_cap]: the index of src[i]'s model in the save's models[] */
    uint8_t *staging;
    size_t staging_cap;
    struct pt_comm *comm; /* of the last save; used by pt_ckpt_saver_wait on the caller's thread */
    const pt_backend *be; /* NULL: each model's own */
    pt_stream *stream;
    staging_piece *pieces; /* host-to-host copies of the staging step */
    int64_t n_pieces, pieces_cap;
};

void pt_ckpt_saver_set_device(pt_ckpt_saver *s, const pt_backend *be, pt_stream *stream)
{
    s->be = be;
    s->stream = be ? stream : NULL;
}

/* ---------------------------------------------------------------- background job */

static void dir_paths(const pt_ckpt_saver *s, int64_t step, char *tmp, size_t cap)
{
    char name[64];
    pt_ckpt_step_name(step, name, sizeof name);
    snprintf(tmp, cap, "%s/%s.tmp", s->dir, name);
}

static pt_status touch_durable(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return pt_fail(PT_EIO, "cannot create %s: %s", path, strerror(errno));
    return pt_ckpt_file_finish(fd, path);
}

/* The merged entries by (name, kind): a chained hash table, so that merging the indexes of many
 * ranks (thousands, each with a few hundred entries) compares an entry only with its own tensor's. */
typedef struct entry_index {
    int *head, *next; /* head[slot]: the newest entry of that slot (-1: none); next[i]: the one before i */
    size_t n_slots;   /* a power of 2, at least twice cap */
    int cap;          /* entries next[] holds */
} entry_index;

static size_t entry_slot(const entry_index *x, const char *name, pt_ckpt_kind kind)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)kind; /* FNV-1a */
    for (const char *c = name; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 29)) & (x->n_slots - 1);
}

/* Makes room for `need` entries, rebuilding the table over merged[0..n) when it grows. */
static pt_status index_reserve(entry_index *x, const pt_ckpt_entry *merged, int n, int need)
{
    if (need <= x->cap)
        return PT_OK;
    int cap = x->cap * 2 > need ? x->cap * 2 : need;
    size_t slots = 1024;
    while (slots < 2 * (size_t)cap)
        slots *= 2;
    int *next = realloc(x->next, (size_t)cap * sizeof *next);
    if (next)
        x->next = next;
    int *head = next ? realloc(x->head, slots * sizeof *head) : NULL;
    if (!head)
        return pt_fail(PT_ENOMEM, "checkpoint: out of memory merging indexes");
    x->head = head;
    x->cap = cap;
    x->n_slots = slots;
    for (size_t i = 0; i < slots; i++)
        head[i] = -1;
    for (int i = 0; i < n; i++) {
        size_t h = entry_slot(x, merged[i].name, merged[i].kind);
        x->next[i] = head[h];
        head[h] = i;
    }
    return PT_OK;
}

/* Rank 0 of a multi-rank save: waits for every rank's marker, merges the indexes. */
static pt_status gather_indexes(pt_ckpt_saver *s, const char *tmp, pt_ckpt_entry **all, int *n_all)
{
    *all = NULL;
    *n_all = 0;
    char path[4200];
    int64_t deadline = pt_deadline_after_ms(s->marker_timeout_ms);
    for (int r = 0; r < s->n_ranks; r++) {
        snprintf(path, sizeof path, "%s/shard-%d.done", tmp, r);
        while (access(path, F_OK) != 0) {
            if (pt_deadline_passed(deadline))
                return pt_fail(PT_ETIMEDOUT,
                               "checkpoint step %lld: rank %d did not finish its shard within %lld s (%s is missing); "
                               "check rank %d's log",
                               (long long)s->st.step, r, (long long)(s->marker_timeout_ms / 1000), path, r);
            struct timespec ts = { 0, MARKER_POLL_NS };
            nanosleep(&ts, NULL);
        }
    }
    pt_status st = PT_OK;
    pt_ckpt_entry *merged = NULL;
    int n = 0;
    entry_index index = { 0 };
    for (int r = 0; r < s->n_ranks && st == PT_OK; r++) {
        snprintf(path, sizeof path, "%s/shard-%d.json", tmp, r);
        cJSON *j = NULL;
        pt_ckpt_entry *e = NULL;
        int ne = 0;
        st = pt_json_read_file(path, &j);
        if (st == PT_OK)
            st = pt_ckpt_entries_from_json(j, path, s->n_ranks, &e, &ne);
        cJSON_Delete(j);
        if (st != PT_OK)
            break;
        pt_ckpt_entry *nm = realloc(merged, ((size_t)n + (size_t)ne + 1) * sizeof *nm);
        if (!nm) {
            pt_ckpt_entries_free(e, ne);
            st = pt_fail(PT_ENOMEM, "checkpoint: out of memory merging indexes");
            break;
        }
        merged = nm;
        st = index_reserve(&index, merged, n, n + ne);
        for (int i = 0; i < ne; i++) {
            int dup = 0;
            if (e[i].rank != r)
                st = pt_fail(PT_EFORMAT, "%s lists a tensor of shard %d; the checkpoint is damaged", path, e[i].rank);
            /* data-parallel replicas hold the same tensors (without ZeRO): keep the lowest rank's copy.
             * Pieces (ZeRO-1 slices, tensor-parallel boxes) of one tensor from several ranks are all
             * kept; a piece held within a kept one is a copy; a partial overlap means two ranks
             * disagree on who owns what. */
            pt_ckpt_part pe = pt_ckpt_entry_part(&e[i]);
            size_t slot = st == PT_OK ? entry_slot(&index, e[i].name, e[i].kind) : 0;
            for (int k = st == PT_OK ? index.head[slot] : -1; k >= 0 && !dup && st == PT_OK; k = index.next[k]) {
                const pt_ckpt_entry *q = &merged[k];
                if (q->kind != e[i].kind || strcmp(q->name, e[i].name) != 0)
                    continue;
                pt_ckpt_part pq = pt_ckpt_entry_part(q);
                uint64_t shared = pt_ckpt_parts_shared(&pq, &pe);
                if (shared == e[i].elem_hi - e[i].elem_lo) {
                    dup = 1;
                } else if (shared > 0) {
                    uint64_t R, K;
                    char tq[160], te[160];
                    pt_ckpt_view(q->ndim, q->shape, &R, &K);
                    pt_ckpt_part_text(&pq.box, pq.lo, pq.hi, R, K, tq, sizeof tq);
                    pt_ckpt_part_text(&pe.box, pe.lo, pe.hi, R, K, te, sizeof te);
                    st = pt_fail(PT_EINVAL,
                                 "checkpoint step %lld: rank %d saved elements %s of %s (%s) and rank %d %s: the "
                                 "pieces overlap and neither holds the other; every data-parallel replica must save "
                                 "with the same ZeRO setting and replica count, every tensor-parallel rank with the "
                                 "same tensor-parallel size",
                                 (long long)s->st.step, q->rank, tq, q->name, pt_ckpt_kind_name(q->kind), r, te);
                }
            }
            if (dup || st != PT_OK) {
                free(e[i].name);
                free(e[i].blocks);
            } else {
                index.next[n] = index.head[slot];
                index.head[slot] = n;
                merged[n++] = e[i];
            }
        }
        free(e);
    }
    free(index.head);
    free(index.next);
    if (st != PT_OK) {
        pt_ckpt_entries_free(merged, n);
        return st;
    }
    *all = merged;
    *n_all = n;
    return PT_OK;
}

static pt_status run_job(pt_ckpt_saver *s)
{
    char tmp[2200], shard[2400], path[2400];
    dir_paths(s, s->st.step, tmp, sizeof tmp);
    snprintf(shard, sizeof shard, "%s/shard-%d.ptz", tmp, s->rank);
    pt_ckpt_entry *e = calloc((size_t)s->n_src + 1, sizeof *e);
    if (!e)
        return pt_fail(PT_ENOMEM, "checkpoint: out of memory");
    pt_status st = PT_OK;
    int fd = -1;
    double enc_s, wr_s;
    pt_ckpt_shard_times(&enc_s, &wr_s); /* resets this thread's counters */
    PT_TRY(pt_ckpt_shard_create(s->dir, shard, s->rank, &fd), done);
    uint64_t off = PT_CKPT_SHARD_HEADER_BYTES;
    PT_TRY(pt_ckpt_shard_append(s->codec, fd, shard, s->rank, s->n_src, s->src, e, &off), done);
    pt_ckpt_shard_times(&enc_s, &wr_s);
    int64_t t_sync = pt_now_ns();
    st = pt_ckpt_shard_finish(fd, shard, off);
    fd = -1;
    if (st != PT_OK)
        goto done;
    pthread_mutex_lock(&s->mu);
    s->info.encode_s = enc_s;
    s->info.io_s = wr_s + pt_seconds_between(t_sync, pt_now_ns());
    pthread_mutex_unlock(&s->mu);
    uint64_t raw = 0;
    for (int i = 0; i < s->n_src; i++)
        raw += e[i].raw_bytes;
    pthread_mutex_lock(&s->mu);
    s->info.raw_bytes = raw;
    s->info.stored_bytes = off;
    pthread_mutex_unlock(&s->mu);

    pt_ckpt_manifest m = { .version = pt_ckpt_format_for(e, s->n_src),
                           .step = s->st.step,
                           .data_step = s->st.data_step,
                           .seed = s->st.seed,
                           .n_ranks = s->n_ranks,
                           .run_json = s->run_json,
                           .n_entries = s->n_src,
                           .entries = e };
    char final_dir[sizeof s->info.step_dir];
    final_dir[0] = 0;
    if (s->n_ranks == 1) {
        PT_TRY(pt_ckpt_commit(s->dir, tmp, &m, s->keep_last, 0, final_dir, sizeof final_dir), done);
    } else {
        cJSON *j;
        PT_TRY(pt_ckpt_entries_to_json(e, s->n_src, &j), done);
        snprintf(path, sizeof path, "%s/shard-%d.json", tmp, s->rank);
        st = pt_json_write_file(path, j, 1);
        cJSON_Delete(j);
        if (st != PT_OK)
            goto done;
        /* the shard and its index are durable before the marker says so; after the marker this
         * rank never touches the directory again: rank 0 may already have renamed it */
        PT_TRY(pt_ckpt_fsync_dir(tmp), done);
        snprintf(path, sizeof path, "%s/shard-%d.done", tmp, s->rank);
        PT_TRY(touch_durable(path), done);
        if (s->rank == 0) {
            pt_ckpt_entry *all;
            int n_all;
            PT_TRY(gather_indexes(s, tmp, &all, &n_all), done);
            m.entries = all;
            m.n_entries = n_all;
            m.version = pt_ckpt_format_for(all, n_all);
            for (int r = 0; r < s->n_ranks && st == PT_OK; r++) {
                snprintf(path, sizeof path, "%s/shard-%d.json", tmp, r);
                unlink(path);
                snprintf(path, sizeof path, "%s/shard-%d.done", tmp, r);
                unlink(path);
            }
            st = pt_ckpt_commit(s->dir, tmp, &m, s->keep_last, 0, final_dir, sizeof final_dir);
            pt_ckpt_entries_free(all, n_all);
            if (st != PT_OK)
                goto done;
        }
    }
    pthread_mutex_lock(&s->mu);
    snprintf(s->info.step_dir, sizeof s->info.step_dir, "%s", final_dir);
    pthread_mutex_unlock(&s->mu);
done:
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < s->n_src; i++)
        pt_ckpt_entry_clear(&e[i]);
    free(e);
    return st;
}

static void *saver_thread(void *p)
{
    pt_ckpt_saver *s = p;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->has_job && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->has_job && s->stop)
            break;
        s->has_job = 0;
        pthread_mutex_unlock(&s->mu);
        int64_t t0 = pt_now_ns();
        pt_status st = run_job(s);
        double secs = pt_seconds_between(t0, pt_now_ns());
        pthread_mutex_lock(&s->mu);
        s->last_status = st;
        snprintf(s->last_msg, sizeof s->last_msg, "%s", st == PT_OK ? "" : pt_last_error());
        s->unreported = st != PT_OK;
        s->info.done = 1;
        s->info.status = st;
        s->info.write_s = secs;
        s->busy = 0;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---------------------------------------------------------------- saver API */

pt_status pt_ckpt_saver_create(const char *dir, int keep_last, int zstd_level, int n_threads, pt_ckpt_saver **out)
{
    *out = NULL;
    if (!dir || !dir[0])
        return pt_fail(PT_EINVAL, "checkpoint directory is empty; pass --ckpt-dir DIR");
    if (strlen(dir) >= 2000)
        return pt_fail(PT_EINVAL, "checkpoint directory path is too long: %.80s...", dir);
    pt_ckpt_saver *s = calloc(1, sizeof *s);
    if (!s)
        return pt_fail(PT_ENOMEM, "checkpoint saver: out of memory");
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->keep_last = keep_last;
    s->n_threads = n_threads < 1 ? 1 : n_threads;
    s->info.step = -1;
    s->info.waited_for_step = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pt_status st;
    PT_TRY(pt_mkdirs(dir), fail);
    pt_ckpt_codec_opts o = pt_ckpt_codec_default(zstd_level, s->n_threads);
    if (zstd_level == 0) { /* stored as it is: one plane per block, no transform to choose */
        o.store_raw = 1;
        o.transform = PT_CKPT_XFORM_NONE;
        o.choose_transform = 0;
        o.fast_planes = 0;
    }
    PT_TRY(pt_ckpt_codec_create(&o, &s->codec), fail);
    if (pthread_create(&s->thread, NULL, saver_thread, s) != 0) {
        st = pt_fail(PT_ENOMEM, "checkpoint saver: cannot start its thread: %s", strerror(errno));
        goto fail;
    }
    s->thread_started = 1;
    *out = s;
    return PT_OK;
fail:
    pt_ckpt_saver_destroy(s);
    return st;
}

static void free_job_names(pt_ckpt_saver *s)
{
    for (int i = 0; i < s->n_src; i++)
        free(s->names[i]);
    s->n_src = 0;
    free(s->run_json);
    s->run_json = NULL;
}

/* Waits (mutex held) until the thread is idle. */
static pt_status wait_idle_locked(pt_ckpt_saver *s)
{
    if (!s->busy)
        return PT_OK;
    int64_t deadline = pt_deadline_after_ms(SAVER_WAIT_TIMEOUT_MS);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += SAVER_WAIT_TIMEOUT_MS / 1000;
    while (s->busy) {
        int r = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        if (r == ETIMEDOUT || pt_deadline_passed(deadline))
            return pt_fail(PT_ETIMEDOUT, "checkpoint: the save of step %lld is still being written after %lld s; check the disk under %s",
                           (long long)s->info.step, SAVER_WAIT_TIMEOUT_MS / 1000, s->dir);
    }
    return PT_OK;
}

void pt_ckpt_saver_destroy(pt_ckpt_saver *s)
{
    if (!s)
        return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        if (wait_idle_locked(s) != PT_OK) {
            /* a stuck write: the thread still uses our buffers, so leak them rather than crash */
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    free_job_names(s);
    free(s->names);
    free(s->from);
    free(s->chunk);
    free(s->src);
    free(s->pieces);
    free(s->staging);
    pt_ckpt_codec_destroy(s->codec);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Adds the whole tensor's elements `part` of tensor p (kind `kind`, of models[chunk]) to the job;
 * from: where those values are (consecutive). */
static pt_status add_src(pt_ckpt_saver *s, const pt_param *p, pt_ckpt_kind kind, int chunk, const float *from,
                         const pt_ckpt_part *part)
{
    if (s->n_src == s->src_cap) {
        int nc = s->src_cap ? s->src_cap * 2 : 256;
        pt_ckpt_src *ns = realloc(s->src, (size_t)nc * sizeof *ns);
        if (!ns)
            return pt_fail(PT_ENOMEM, "checkpoint saver: out of memory");
        s->src = ns;
        char **nn = realloc(s->names, (size_t)nc * sizeof *nn);
        if (!nn)
            return pt_fail(PT_ENOMEM, "checkpoint saver: out of memory");
        s->names = nn;
        const float **nf = realloc(s->from, (size_t)nc * sizeof *nf);
        if (!nf)
            return pt_fail(PT_ENOMEM, "checkpoint saver: out of memory");
        s->from = nf;
        int *nk = realloc(s->chunk, (size_t)nc * sizeof *nk);
        if (!nk)
            return pt_fail(PT_ENOMEM, "checkpoint saver: out of memory");
        s->chunk = nk;
        s->src_cap = nc;
    }
    char *name = strdup(p->name);
    if (!name)
        return pt_fail(PT_ENOMEM, "checkpoint saver: out of memory");
    pt_ckpt_src *d = &s->src[s->n_src];
    memset(d, 0, sizeof *d);
    d->name = name;
    d->kind = kind;
    d->dtype = PT_CKPT_F32;
    d->ndim = pt_ckpt_param_whole_shape(p, d->shape);
    pt_ckpt_box whole = pt_ckpt_view_box(d->ndim, d->shape);
    int is_box = memcmp(&whole, &part->box, sizeof whole) != 0;
    if (is_box)
        d->box = part->box;
    uint64_t all = (part->box.r1 - part->box.r0) * (part->box.c1 - part->box.c0);
    if (part->lo != 0 || part->hi != all) {
        d->elem_lo = part->lo;
        d->elem_hi = part->hi;
    }
    s->from[s->n_src] = from;
    s->chunk[s->n_src] = chunk;
    s->names[s->n_src++] = name;
    return PT_OK;
}

/* Local elements [a, b) of tensor p (at: where element a is), less the elements other tensor-parallel
 * ranks write (skip_rep: pt_param rep_*), as pieces of the whole tensor: added to the job when s
 * != NULL, their bytes to *bytes. */
static pt_status add_local(pt_ckpt_saver *s, const pt_param *p, pt_ckpt_kind kind, int chunk, const float *at,
                           size_t a, size_t b, int skip_rep, size_t *bytes)
{
    size_t cut[2][2] = { { a, b }, { 0, 0 } };
    int nc = 1;
    if (skip_rep && p->rep_lo < p->rep_hi) {
        nc = 0;
        size_t x = b < p->rep_lo ? b : p->rep_lo, y = a > p->rep_hi ? a : p->rep_hi;
        if (a < x) {
            cut[nc][0] = a;
            cut[nc][1] = x;
            nc++;
        }
        if (y < b) {
            cut[nc][0] = y;
            cut[nc][1] = b;
            nc++;
        }
    }
    for (int c = 0; c < nc; c++) {
        pt_ckpt_tp_piece pc[PT_CKPT_TP_MAX_PIECES];
        int np = pt_ckpt_param_pieces(p, cut[c][0], cut[c][1], pc);
        for (int i = 0; i < np; i++) {
            if (s)
                PT_CHECK(add_src(s, p, kind, chunk, at + (pc[i].local - a), &pc[i].part));
            *bytes += (size_t)(pc[i].part.hi - pc[i].part.lo) * sizeof(float);
        }
    }
    return PT_OK;
}

static pt_status add_pieces(pt_ckpt_saver *s, uint8_t *dst, const float *src, size_t bytes)
{
    for (size_t off = 0; off < bytes; off += STAGING_PIECE_BYTES) {
        if (s->n_pieces == s->pieces_cap) {
            int64_t nc = s->pieces_cap ? s->pieces_cap * 2 : 1024;
            staging_piece *np = realloc(s->pieces, (size_t)nc * sizeof *np);
            if (!np)
                return pt_fail(PT_ENOMEM, "checkpoint saver: out of memory");
            s->pieces = np;
            s->pieces_cap = nc;
        }
        size_t len = bytes - off < STAGING_PIECE_BYTES ? bytes - off : STAGING_PIECE_BYTES;
        s->pieces[s->n_pieces++] = (staging_piece){ dst + off, (const uint8_t *)src + off, len };
    }
    return PT_OK;
}

static pt_status copy_piece(void *ctx, int64_t i, int worker)
{
    (void)worker;
    const staging_piece *p = &((pt_ckpt_saver *)ctx)->pieces[i];
    memcpy(p->dst, p->src, p->bytes);
    return PT_OK;
}

/* A tied wte copy or an LM-head copy (pt_model_tensor_is_copy) is not saved (the original is). */
static int saved_here(pt_model *m, const pt_param *p) { return !pt_model_tensor_is_copy(m, p); }

/* With pt_ckpt_save_opts.with_copies (a rank's snapshot: whole by itself): tensor p of chunk i is
 * saved when it is an original, or a copy whose original no chunk of these holds and that no
 * earlier chunk of these already saves (a name is stored once). */
static int saved_with_copies(pt_model *const *models, int n, int i, const pt_param *p)
{
    if (saved_here(models[i], p))
        return 1;
    for (int j = 0; j < n; j++)
        for (int t = 0; t < pt_model_n_tensors(models[j]); t++) {
            const pt_param *q = pt_model_tensor(models[j], t);
            if (strcmp(q->name, p->name) == 0 && (saved_here(models[j], q) || j < i))
                return 0;
        }
    return 1;
}

/* Makes the host staging buffer hold `total` bytes (it only grows); touch: write every page now,
 * so that a later copy into it does not pay the page faults. */
static pt_status staging_grow(pt_ckpt_saver *s, size_t total, int touch)
{
    if (total > s->staging_cap) {
        free(s->staging);
        s->staging = malloc(total);
        s->staging_cap = s->staging ? total : 0;
        if (!s->staging)
            return pt_fail(PT_ENOMEM, "checkpoint save: cannot allocate %zu bytes of host staging", total);
        if (touch)
            memset(s->staging, 0, total);
    }
    return PT_OK;
}

/* What a save of these chunks stores, in order: for each chunk, each tensor it saves, its weights
 * (unless optim_only), then its two moments over the part of the tensor inside the optimizer's
 * range (pt_optim_range: a piece when that is not the whole tensor, nothing when it misses it);
 * with tensor parallelism each as pieces of the whole tensor, without the elements that another
 * rank of the group writes (pt_param rep_first). With s != NULL each is added to the job (add_src);
 * *bytes: their total size. */
static pt_status walk_saved(pt_ckpt_saver *s, pt_model *const *models, pt_optim *const *optims, int n,
                            int optim_only, int with_copies, size_t *bytes)
{
    *bytes = 0;
    for (int i = 0; i < n; i++) {
        pt_model *m = models[i];
        pt_optim *o = optims ? optims[i] : NULL;
        size_t lo = 0, hi = 0;
        if (o)
            pt_optim_range(o, &lo, &hi);
        int tp_rank = pt_model_tp_rank(m);
        for (int t = 0; t < pt_model_n_tensors(m); t++) {
            const pt_param *p = pt_model_tensor(m, t);
            if (with_copies ? !saved_with_copies(models, n, i, p) : !saved_here(m, p))
                continue;
            PT_CHECK(pt_ckpt_param_check(p));
            /* a snapshot (with_copies) holds everything its rank holds: it is loaded by that rank alone */
            int skip_rep = !with_copies && p->rep_n > 1 && tp_rank != p->rep_first;
            if (!optim_only)
                PT_CHECK(add_local(s, p, PT_CKPT_PARAM, i, pt_model_params(m) + p->offset, 0, p->numel, skip_rep, bytes));
            if (!o)
                continue;
            size_t a = p->offset > lo ? p->offset : lo;
            size_t b = p->offset + p->numel < hi ? p->offset + p->numel : hi;
            if (a >= b)
                continue; /* another replica's slice */
            for (int k = 1; k <= 2; k++) {
                const float *base = k == 1 ? pt_optim_m(o) : pt_optim_v(o); /* element lo of the model */
                PT_CHECK(add_local(s, p, (pt_ckpt_kind)k, i, base + (a - lo), a - p->offset, b - p->offset, skip_rep,
                                   bytes));
            }
        }
    }
    return PT_OK;
}

static pt_status check_save_args(pt_model *const *models, pt_optim *const *optims, int n, const pt_ckpt_save_opts *o,
                                 const char *what)
{
    if (n < 0 || (n > 0 && !models))
        return pt_fail(PT_EINVAL, "checkpoint %s: bad arguments (n = %d)", what, n);
    if (o && o->optim_only && n > 0 && !optims)
        return pt_fail(PT_EINVAL, "checkpoint %s: optim_only without optimizers would save nothing; pass the "
                                  "optimizers, or n = 0",
                       what);
    return PT_OK;
}

pt_status pt_ckpt_saver_reserve_ex(pt_ckpt_saver *s, pt_model *const *models, pt_optim *const *optims, int n,
                                   const pt_ckpt_save_opts *o)
{
    if (!s)
        return pt_fail(PT_EINVAL, "checkpoint reserve: no saver");
    PT_CHECK(check_save_args(models, optims, n, o, "reserve"));
    pthread_mutex_lock(&s->mu);
    pt_status st = wait_idle_locked(s); /* the writer reads the staging buffer while it works */
    pthread_mutex_unlock(&s->mu);
    PT_CHECK(st);
    size_t total = 0;
    PT_CHECK(walk_saved(NULL, models, optims, n, o && o->optim_only, o && o->with_copies, &total));
    return staging_grow(s, total, 1);
}

pt_status pt_ckpt_saver_reserve(pt_ckpt_saver *s, pt_model *const *models, pt_optim *const *optims, int n)
{
    return pt_ckpt_saver_reserve_ex(s, models, optims, n, NULL);
}

/* Collective: every rank learns whether any rank's part of the save of `step` failed (a rank
 * that returned early would leave the others waiting at the next collective until the timeout). */
static pt_status agree(struct pt_comm *comm, pt_status st, int64_t step)
{
    double bad = st != PT_OK;
    char msg[1200];
    snprintf(msg, sizeof msg, "%s", pt_last_error());
    pt_status cst = pt_comm_allreduce_f64(comm, NULL, &bad, 1, pt_deadline_after_ms(pt_comm_timeout_ms(comm)));
    if (st != PT_OK)
        return pt_fail(st, "%s", msg);
    if (cst != PT_OK)
        return cst;
    if (bad > 0)
        return pt_fail(PT_EIO, "checkpoint of step %lld failed on another rank; see its log", (long long)step);
    return PT_OK;
}

pt_status pt_ckpt_save(pt_ckpt_saver *s, struct pt_comm *comm, pt_model *const *models, pt_optim *const *optims,
                       int n, const pt_train_state *st_in)
{
    return pt_ckpt_save_ex(s, comm, models, optims, n, st_in, NULL);
}

pt_status pt_ckpt_save_ex(pt_ckpt_saver *s, struct pt_comm *comm, pt_model *const *models, pt_optim *const *optims,
                          int n, const pt_train_state *st_in, const pt_ckpt_save_opts *opts)
{
    if (n < 0 || (n > 0 && !models) || !st_in || st_in->step < 0)
        return pt_fail(PT_EINVAL, "checkpoint save: bad arguments (n = %d, step %lld)", n,
                       st_in ? (long long)st_in->step : -1LL);
    PT_CHECK(check_save_args(models, optims, n, opts, "save"));
    cJSON *run = cJSON_Parse(st_in->run_json ? st_in->run_json : "{}");
    int run_ok = cJSON_IsObject(run);
    cJSON_Delete(run);
    if (!run_ok) /* checked here: the background thread would only find out after the copy */
        return pt_fail(PT_EINVAL, "checkpoint save: the run description is not a JSON object (\"%.40s\")",
                       st_in->run_json);
    /* 1. the previous save */
    int64_t t0 = pt_now_ns();
    pthread_mutex_lock(&s->mu);
    int64_t waited_for = s->busy ? s->info.step : -1;
    pt_status st = wait_idle_locked(s);
    if (st == PT_OK && s->unreported) {
        s->unreported = 0;
        st = pt_fail(s->last_status, "checkpoint of step %lld failed: %s", (long long)s->info.step, s->last_msg);
    }
    int64_t prev_step = s->info.step;
    pthread_mutex_unlock(&s->mu);
    if (comm && s->comm == comm)
        st = agree(comm, st, prev_step);
    PT_CHECK(st);
    double wait_s = pt_seconds_between(t0, pt_now_ns());

    /* 2. the tensor list and the staging copy */
    free_job_names(s);
    size_t total = 0;
    PT_CHECK(walk_saved(s, models, optims, n, opts && opts->optim_only, opts && opts->with_copies, &total));
    PT_CHECK(staging_grow(s, total, 0));
    int64_t t1 = pt_now_ns();
    size_t pos = 0;
    s->n_pieces = 0;
    for (int i = 0; i < s->n_src; i++) {
        pt_model *m = models[s->chunk[i]];
        const pt_backend *be = s->be ? s->be : pt_model_backend(m);
        pt_stream *stream = s->be ? s->stream : pt_model_stream(m);
        /* Host memory (the CPU backend) is copied on the saver's threads, in pieces, after this
         * loop; device memory goes through the backend's copy, in order, on its stream. */
        int on_host = strcmp(be->name, "cpu") == 0;
        const pt_ckpt_src *d = &s->src[i];
        uint64_t values = d->elem_hi - d->elem_lo;
        if (!d->elem_hi) {
            pt_ckpt_box b = d->box;
            if (!(b.r1 || b.c1))
                b = pt_ckpt_view_box(d->ndim, d->shape);
            values = (b.r1 - b.r0) * (b.c1 - b.c0);
        }
        size_t bytes = (size_t)values * sizeof(float);
        if (on_host)
            PT_CHECK(add_pieces(s, s->staging + pos, s->from[i], bytes));
        else
            PT_CHECK(be->memcpy_d2h(stream, s->staging + pos, s->from[i], bytes));
        s->src[i].data = s->staging + pos;
        pos += bytes;
    }
    PT_CHECK(pt_ckpt_parallel_for(s->n_threads, s->n_pieces, copy_piece, s));
    double stage_s = pt_seconds_between(t1, pt_now_ns());

    /* 3. the directory, and (multi-rank) the barrier that orders its creation before any shard */
    int rank = comm ? pt_comm_rank(comm) : 0, n_ranks = comm ? pt_comm_size(comm) : 1;
    char tmp[2200];
    dir_paths(s, st_in->step, tmp, sizeof tmp);
    if (rank == 0) {
        PT_CHECK(pt_ckpt_remove_dir(tmp)); /* left over from a crash */
        PT_CHECK(pt_mkdirs(tmp));
    }
    if (comm) {
        int64_t timeout_ms = pt_comm_timeout_ms(comm);
        PT_CHECK(pt_comm_barrier(comm, NULL, pt_deadline_after_ms(timeout_ms)));
        s->marker_timeout_ms = SAVER_WAIT_TIMEOUT_MS;
    }

    /* 4. hand over */
    s->st = *st_in;
    s->run_json = strdup(st_in->run_json ? st_in->run_json : "{}");
    if (!s->run_json)
        return pt_fail(PT_ENOMEM, "checkpoint save: out of memory");
    s->rank = rank;
    s->n_ranks = n_ranks;
    s->comm = comm;
    pthread_mutex_lock(&s->mu);
    memset(&s->info, 0, sizeof s->info);
    s->info.step = st_in->step;
    s->info.waited_for_step = waited_for;
    s->info.wait_s = waited_for >= 0 ? wait_s : 0;
    s->info.stage_s = stage_s;
    s->has_job = 1;
    s->busy = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return PT_OK;
}

pt_status pt_ckpt_saver_wait(pt_ckpt_saver *s)
{
    pthread_mutex_lock(&s->mu);
    pt_status st = wait_idle_locked(s);
    if (st == PT_OK && s->last_status != PT_OK) {
        s->unreported = 0;
        st = pt_fail(s->last_status, "checkpoint of step %lld failed: %s", (long long)s->info.step, s->last_msg);
    }
    struct pt_comm *comm = s->comm;
    int64_t step = s->info.step;
    pthread_mutex_unlock(&s->mu);
    return comm ? agree(comm, st, step) : st;
}

void pt_ckpt_saver_info(pt_ckpt_saver *s, pt_ckpt_save_info *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->info;
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- load */

/* What one (tensor, kind) of a chunk needs: the tensor's local elements [a, b) (weights: all of
 * them; moments: those in the optimizer's range), which are the whole tensor's `pieces`, and the
 * checkpoint entries holding any of them (items[item0 .. item0 + n_items)). */
typedef struct load_need {
    const pt_param *p;
    pt_ckpt_kind kind;
    size_t a, b;
    float *dev; /* where local element a goes, in the model's or optimizer's buffer */
    const pt_backend *be;
    pt_stream *stream;
    int on_host;  /* the buffer is host memory (the CPU backend): filled in place */
    int direct;   /* one entry holding exactly these values in this order: decoded straight to its place */
    int n_pieces;
    pt_ckpt_tp_piece pieces[PT_CKPT_TP_MAX_PIECES];
    int item0, n_items;
    float *slice; /* in its batch: where its elements are assembled (dev on the host, else host memory) */
} load_need;

#define LOAD_BATCH_BYTES ((size_t)64 << 20)

static pt_status check_shape(const pt_ckpt_entry *e, const pt_param *p, const char *step_dir)
{
    int64_t shape[PT_CKPT_MAX_DIMS];
    int ndim = pt_ckpt_param_whole_shape(p, shape);
    int same = e->ndim == ndim && e->dtype == PT_CKPT_F32;
    for (int d = 0; same && d < ndim; d++)
        same = e->shape[d] == shape[d];
    if (same)
        return PT_OK;
    char want[96] = "", have[96] = "";
    for (int d = 0; d < ndim; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)shape[d]);
    for (int d = 0; d < e->ndim; d++)
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", d ? "," : "", (long long)e->shape[d]);
    return pt_fail(PT_EFORMAT, "%s/manifest.json: tensor %s (%s) is %s [%s] but the model needs f32 [%s]; "
                               "load with the model config the checkpoint was saved with",
                   step_dir, e->name, pt_ckpt_kind_name(e->kind), pt_ckpt_dtype_name(e->dtype), have, want);
}

static pt_status push_item(const pt_ckpt_entry ***items, int *n, int *cap, const pt_ckpt_entry *e)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 512;
        const pt_ckpt_entry **ni = realloc(*items, (size_t)nc * sizeof *ni);
        if (!ni)
            return pt_fail(PT_ENOMEM, "checkpoint load: out of memory");
        *items = ni;
        *cap = nc;
    }
    (*items)[(*n)++] = e;
    return PT_OK;
}

/* Finds the checkpoint entries of need `nd` (its pieces set): a whole tensor, or the pieces that
 * intersect it, which must hold all of it exactly once. */
static pt_status plan_need(const pt_ckpt_manifest *man, const char *step_dir, load_need *nd,
                           const pt_ckpt_entry ***items, int *n_items, int *cap)
{
    const pt_param *p = nd->p;
    const pt_ckpt_entry **v;
    int nv;
    PT_CHECK(pt_ckpt_manifest_pieces(man, p->name, nd->kind, &v, &nv));
    pt_status st = PT_OK;
    char what[600];
    snprintf(what, sizeof what, "%s/manifest.json", step_dir);
    int64_t shape[PT_CKPT_MAX_DIMS];
    uint64_t R, K;
    pt_ckpt_view(pt_ckpt_param_whole_shape(p, shape), shape, &R, &K);
    pt_ckpt_part need[PT_CKPT_TP_MAX_PIECES];
    for (int i = 0; i < nd->n_pieces; i++)
        need[i] = nd->pieces[i].part;
    if (nv == 0) {
        /* a checkpoint of optimizer slices lacking every piece of this tensor: the range is missing */
        if (nd->kind != PT_CKPT_PARAM && pt_ckpt_format_for(man->entries, man->n_entries) > PT_CKPT_FORMAT_WHOLE)
            st = pt_ckpt_cover_check(v, 0, p->name, nd->kind, R, K, need, nd->n_pieces, what);
        else
            st = pt_fail(PT_EFORMAT, "%s has no %s for tensor %s; it was saved from another model%s", what,
                         pt_ckpt_kind_name(nd->kind), p->name, nd->kind ? " or without optimizer state" : "");
        goto done;
    }
    for (int i = 0; i < nv; i++)
        PT_TRY(check_shape(v[i], p, step_dir), done);
    PT_TRY(pt_ckpt_cover_check(v, nv, p->name, nd->kind, R, K, need, nd->n_pieces, what), done);
    nd->item0 = *n_items;
    for (int i = 0; i < nv; i++) {
        pt_ckpt_part pe = pt_ckpt_entry_part(v[i]);
        int used = 0;
        for (int k = 0; k < nd->n_pieces && !used; k++)
            used = pt_ckpt_parts_shared(&pe, &need[k]) > 0;
        if (used)
            PT_TRY(push_item(items, n_items, cap, v[i]), done);
    }
    nd->n_items = *n_items - nd->item0;
    if (nd->n_pieces == 1 && nd->n_items == 1) {
        pt_ckpt_part pe = pt_ckpt_entry_part((*items)[nd->item0]);
        pt_ckpt_box_canon(R, K, &pe.box, &pe.lo, &pe.hi);
        nd->direct = memcmp(&pe.box, &need[0].box, sizeof pe.box) == 0 && pe.lo == need[0].lo && pe.hi == need[0].hi;
    }
done:
    free(v);
    return st;
}

/* Host bytes need nd takes in a batch: what is decoded (its entries, unless decoded in place) and,
 * for device memory, the slice assembled on the host before the copy. */
static size_t need_bytes(const load_need *nd, const pt_ckpt_entry *const *items)
{
    size_t b = nd->on_host ? 0 : (nd->b - nd->a) * sizeof(float);
    if (!nd->direct)
        for (int i = 0; i < nd->n_items; i++)
            b += (size_t)items[nd->item0 + i]->raw_bytes;
    return b;
}

/* Loads one step directory (info->step_dir) into the chunks; the body of pt_ckpt_load_ex. */
/* *damaged is set to 1 when the failure is damaged data found while decoding (checksum, truncation),
 * as opposed to a checkpoint that does not fit the models (missing tensor, shape, no optimizer state). */
static pt_status load_step_dir(pt_model *const *models, pt_optim *const *optims, int n, pt_train_state *st_out,
                               const pt_backend *be, pt_stream *stream, pt_ckpt_load_info *info, int *damaged)
{
    *damaged = 0;
    pt_ckpt_reader *r;
    PT_CHECK(pt_ckpt_reader_open(info->step_dir, 2, &r));
    const pt_ckpt_manifest *man = pt_ckpt_reader_manifest(r);
    pt_status st = PT_OK;
    load_need *needs = NULL;
    const pt_ckpt_entry **items = NULL;
    void **dst = NULL;
    int n_needs = 0, needs_cap = 0, n_items = 0, cap = 0;
    uint8_t *host = NULL;
    size_t host_cap = 0;
    for (int i = 0; i < n; i++) {
        pt_model *m = models[i];
        pt_optim *o = optims ? optims[i] : NULL;
        const pt_backend *ibe = be ? be : pt_model_backend(m);
        pt_stream *istream = be ? stream : pt_model_stream(m);
        size_t olo = 0, ohi = 0;
        if (o)
            pt_optim_range(o, &olo, &ohi);
        int n_kinds = o ? 3 : 1;
        for (int t = 0; t < pt_model_n_tensors(m); t++) {
            const pt_param *p = pt_model_tensor(m, t);
            PT_TRY(pt_ckpt_param_check(p), done);
            for (int k = 0; k < n_kinds; k++) {
                /* weights: the whole tensor; moments: the part inside the optimizer's range (its buffer
                 * holds the model's flat elements [olo, ohi) from element 0) */
                size_t lo = k ? olo : 0, hi = k ? ohi : p->offset + p->numel;
                size_t a = p->offset > lo ? p->offset : lo, b = p->offset + p->numel < hi ? p->offset + p->numel : hi;
                if (a >= b)
                    continue;
                if (n_needs == needs_cap) {
                    int nc = needs_cap ? needs_cap * 2 : 256;
                    load_need *nn = realloc(needs, (size_t)nc * sizeof *nn);
                    if (!nn) {
                        st = pt_fail(PT_ENOMEM, "checkpoint load: out of memory");
                        goto done;
                    }
                    needs = nn;
                    needs_cap = nc;
                }
                float *base = k == 0 ? pt_model_params(m) : (k == 1 ? pt_optim_m(o) : pt_optim_v(o));
                load_need *nd = &needs[n_needs];
                memset(nd, 0, sizeof *nd);
                nd->p = p;
                nd->kind = (pt_ckpt_kind)k;
                nd->a = a - p->offset;
                nd->b = b - p->offset;
                nd->dev = base + (a - lo);
                nd->be = ibe;
                nd->stream = istream;
                nd->on_host = strcmp(ibe->name, "cpu") == 0;
                nd->n_pieces = pt_ckpt_param_pieces(p, nd->a, nd->b, nd->pieces);
                PT_TRY(plan_need(man, info->step_dir, nd, &items, &n_items, &cap), done);
                n_needs++;
            }
        }
    }
    dst = malloc(((size_t)n_items + 1) * sizeof *dst);
    if (!dst) {
        st = pt_fail(PT_ENOMEM, "checkpoint load: out of memory");
        goto done;
    }
    /* Batches of needs, each decoded by one read (its entries on the reader's threads), then put in
     * place: a need held by one entry in its order is decoded straight into host memory (CPU) or the
     * host slice; anything else is decoded to the batch buffer and copied piece by piece. */
    for (int i = 0; i < n_needs;) {
        size_t want = need_bytes(&needs[i], items);
        int j = i + 1;
        for (; j < n_needs; j++) {
            size_t w = need_bytes(&needs[j], items);
            if (want + w > LOAD_BATCH_BYTES)
                break;
            want += w;
        }
        if (want > host_cap) {
            size_t nc = want > LOAD_BATCH_BYTES ? want : LOAD_BATCH_BYTES;
            free(host);
            host = malloc(nc);
            host_cap = host ? nc : 0;
            if (!host) {
                st = pt_fail(PT_ENOMEM, "checkpoint load: cannot allocate %zu bytes", nc);
                goto done;
            }
        }
        size_t used = 0;
        int first_item = needs[i].item0, nb = 0;
        for (int q = i; q < j; q++) {
            load_need *nd = &needs[q];
            nd->slice = nd->dev;
            if (!nd->on_host) {
                nd->slice = (float *)(void *)(host + used);
                used += (nd->b - nd->a) * sizeof(float);
            }
            for (int k = 0; k < nd->n_items; k++) {
                if (nd->direct) {
                    dst[nd->item0 + k] = nd->slice;
                } else {
                    dst[nd->item0 + k] = host + used;
                    used += (size_t)items[nd->item0 + k]->raw_bytes;
                }
                nb++;
            }
        }
        st = pt_ckpt_reader_read(r, nb, items + first_item, dst + first_item);
        if (st != PT_OK) {
            *damaged = 1;
            goto done;
        }
        for (int q = i; q < j && st == PT_OK; q++) {
            load_need *nd = &needs[q];
            for (int k = 0; k < nd->n_items && !nd->direct; k++)
                for (int c = 0; c < nd->n_pieces; c++)
                    pt_ckpt_copy_part(items[nd->item0 + k], dst[nd->item0 + k], &nd->pieces[c].part,
                                      nd->slice + (nd->pieces[c].local - nd->a));
            if (!nd->on_host)
                st = nd->be->memcpy_h2d(nd->stream, nd->dev, nd->slice, (nd->b - nd->a) * sizeof(float));
        }
        for (int q = i; q < j && st == PT_OK; q++)
            if (!needs[q].on_host)
                st = needs[q].be->stream_sync(needs[q].stream);
        if (st != PT_OK)
            goto done;
        i = j;
    }
    info->n_loaded = n_needs;
    if (optims)
        for (int i = 0; i < n; i++)
            if (optims[i])
                pt_optim_set_steps_done(optims[i], man->step);
    st_out->step = man->step;
    st_out->data_step = man->data_step;
    st_out->seed = man->seed;
    st_out->run_json = strdup(man->run_json);
    if (!st_out->run_json)
        st = pt_fail(PT_ENOMEM, "checkpoint load: out of memory");
done:
    free(host);
    free(dst);
    free(items);
    free(needs);
    pt_ckpt_reader_close(r);
    return st;
}

pt_status pt_ckpt_load_ex(const char *dir, pt_model *const *models, pt_optim *const *optims, int n, pt_train_state *st_out,
                          const pt_backend *be, pt_stream *stream, pt_ckpt_load_info *info)
{
    pt_ckpt_load_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    memset(st_out, 0, sizeof *st_out);
    if (n < 0 || (n > 0 && !models))
        return pt_fail(PT_EINVAL, "checkpoint load: bad arguments (n = %d)", n);
    PT_CHECK(pt_ckpt_resolve(dir, info->step_dir, sizeof info->step_dir, info->note, sizeof info->note));
    int damaged = 0;
    pt_status st = load_step_dir(models, optims, n, st_out, be, stream, info, &damaged);
    /* Damaged tensor data shows only while decoding. Given a checkpoint root (not one step
     * directory), fall back to the newest older checkpoint that loads, and say why. Every tensor
     * is loaded again, so nothing of the damaged one stays in the models. */
    if (!damaged || strcmp(info->step_dir, dir) == 0)
        return st;
    char first_err[768], failed[sizeof info->step_dir];
    snprintf(first_err, sizeof first_err, "%s", pt_last_error());
    snprintf(failed, sizeof failed, "%s", info->step_dir);
    const char *base = strrchr(failed, '/');
    long long failed_step = -1;
    if (sscanf(base ? base + 1 : failed, "step_%lld", &failed_step) != 1)
        return st;
    int64_t *steps = NULL;
    int n_steps = 0;
    if (pt_ckpt_list(dir, &steps, &n_steps) != PT_OK)
        return pt_fail(st, "%s", first_err);
    for (int i = n_steps - 1; i >= 0; i--) {
        if (steps[i] >= failed_step)
            continue;
        char sn[64];
        pt_ckpt_step_name(steps[i], sn, sizeof sn);
        snprintf(info->step_dir, sizeof info->step_dir, "%s/%s", dir, sn);
        memset(st_out, 0, sizeof *st_out);
        if (load_step_dir(models, optims, n, st_out, be, stream, info, &damaged) == PT_OK) {
            snprintf(info->note, sizeof info->note, "checkpoint: %s; resumed from step_%06lld instead, the newest "
                     "checkpoint that loads", first_err, (long long)steps[i]);
            free(steps);
            return PT_OK;
        }
    }
    free(steps);
    snprintf(info->step_dir, sizeof info->step_dir, "%s", failed);
    return pt_fail(st, "%s; no older checkpoint in %s loads either; start without --resume", first_err, dir);
}

pt_status pt_ckpt_load(const char *dir, pt_model *const *models, pt_optim *const *optims, int n, pt_train_state *st)
{
    return pt_ckpt_load_ex(dir, models, optims, n, st, NULL, NULL, NULL);
}

pt_status pt_ckpt_check_data(const char *dir, const pt_dataset *d)
{
    char step_dir[4096];
    pt_ckpt_manifest *m = NULL;
    if (pt_ckpt_resolve(dir, step_dir, sizeof step_dir, NULL, 0) != PT_OK ||
        pt_ckpt_manifest_read(step_dir, &m) != PT_OK) {
        pt_clear_error();
        return PT_OK; /* the load that follows reports what is wrong with the checkpoint */
    }
    pt_status st = pt_dataset_check_run(d, m->run_json, step_dir);
    pt_ckpt_manifest_destroy(m);
    return st;
}

pt_status pt_ckpt_run_model_config(const char *run_json, const char *model_opt, pt_model_config *cfg)
{
    if (model_opt)
        return pt_model_config_load(model_opt, cfg);
    cJSON *run = cJSON_Parse(run_json ? run_json : "{}");
    const cJSON *mj = run ? cJSON_GetObjectItemCaseSensitive(run, "model") : NULL;
    pt_status st;
    if (cJSON_IsString(mj))
        st = pt_model_config_load(mj->valuestring, cfg);
    else if (cJSON_IsObject(mj))
        st = pt_model_config_from_json(mj, "the checkpoint's run description (\"model\")", cfg);
    else
        st = pt_fail(PT_EINVAL, "the checkpoint's run description names no model; pass --model NAME|FILE");
    cJSON_Delete(run);
    return st;
}
