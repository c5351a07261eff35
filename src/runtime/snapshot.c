/* In-memory snapshots with a buddy copy on another node: see pipetrain/snapshot.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipetrain/fsutil.h"
#include "pipetrain/snapshot.h"
#include "pipetrain/timeutil.h"

#define SNAP_PIECE ((size_t)16 << 20) /* bytes per message of a copy */
#define SNAP_MAGIC 0x70745370u        /* "pTSp" */
#define SNAP_HELD 2                   /* steps a store reports: at most two are complete at once */

struct pt_snapshot {
    pt_snapshot_opts o;
    char dir[2048], own[2300], held[2300];
    int to, from;          /* this rank's copy goes to `to`; `from`'s is held here; -1: no buddy */
    pt_ckpt_saver *saver;  /* writes DIR/rank-R (raw, one thread, keeps all: take() prunes) */
    pt_comm *bcomm;        /* the buddy thread's communicator */
    pthread_t th;
    int th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy, quit;        /* the buddy thread has a job / must end */
    int64_t job_step;
    pt_status status;      /* the last background result (sticky: a failed snapshot fails every later call) */
    char msg[1024];
    int64_t prev_step;     /* the last step taken (-1: none) */
    pt_snapshot_info info;
    double *agree;         /* [world]: the buddy thread's agreement, one flag per rank */
};

/* ---- copying one step directory between ranks ---- */

typedef struct snap_hdr {
    uint32_t magic, have;
    int64_t step;
    uint64_t manifest_bytes, shard_bytes;
} snap_hdr;

static pt_status read_whole(const char *path, char **out, size_t *len)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pt_fail(PT_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    pt_status st = PT_OK;
    char *b = NULL;
    if (fstat(fd, &sb) != 0 || !(b = malloc((size_t)sb.st_size + 1))) {
        st = pt_fail(PT_EIO, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)sb.st_size) {
        ssize_t r = read(fd, b + got, (size_t)sb.st_size - got);
        if (r <= 0) {
            st = pt_fail(PT_EIO, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "it was cut short");
            goto out;
        }
        got += (size_t)r;
    }
    b[got] = 0;
    *len = got;
    *out = b;
    b = NULL;
out:
    free(b);
    close(fd);
    return st;
}

static pt_status write_at(int fd, const char *path, const char *p, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return pt_fail(PT_EIO, "cannot write %s: %s; the snapshot store is full? give --snapshot-dir on a memory "
                                   "file system with room (docs/fault-tolerance.md says how much)",
                           path, w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return PT_OK;
}

static pt_status read_at(int fd, const char *path, char *p, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t r = pread(fd, p, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return pt_fail(PT_EIO, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "it is shorter than it was");
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return PT_OK;
}

static pt_status xwait(pt_comm *c, pt_comm_req **r, int n, const char *what, int peer)
{
    pt_status st = pt_comm_waitall(c, r, n, pt_deadline_after_ms(pt_comm_timeout_ms(c)));
    if (st != PT_OK)
        return pt_fail_wrap(st, "rank %d: copying a snapshot %s rank %d", pt_comm_rank(c), what, peer);
    return PT_OK;
}

/* Sends the one-shard step directory send_dir (NULL: nothing, said in the header) to send_peer
 * and, at the same time, receives one from recv_peer, committed under recv_root (tmp dir, rename,
 * `latest`). A peer of -1 skips that direction. `round` and `step` make the messages' ids.
 * *got: the step received (-1: none, or the sender had none). */
static pt_status snap_exchange(pt_comm *c, int send_peer, const char *send_dir, int recv_peer, const char *recv_root,
                               int round, int64_t step, int64_t *got)
{
    *got = -1;
    pt_status st = PT_OK;
    char *man = NULL, *rman = NULL, *sbuf = NULL, *rbuf = NULL;
    int sfd = -1, rfd = -1;
    char spath[4200] = "", rpath[4400] = "", tmp[4200] = "", shard[32];
    pt_ckpt_shard_name(0, shard, sizeof shard);
    snap_hdr sh = { .magic = SNAP_MAGIC }, rh;
    memset(&rh, 0, sizeof rh);
    size_t man_len = 0;
    if (send_peer >= 0 && send_dir) {
        char mp[4200];
        snprintf(mp, sizeof mp, "%s/manifest.json", send_dir);
        snprintf(spath, sizeof spath, "%s/%s", send_dir, shard);
        struct stat sb;
        PT_TRY(read_whole(mp, &man, &man_len), out);
        sfd = open(spath, O_RDONLY | O_CLOEXEC);
        if (sfd < 0 || fstat(sfd, &sb) != 0) {
            st = pt_fail(PT_EIO, "cannot open %s: %s", spath, strerror(errno));
            goto out;
        }
        sh.have = 1;
        sh.step = step;
        sh.manifest_bytes = man_len;
        sh.shard_bytes = (uint64_t)sb.st_size;
    }
    pt_msg_id hid = { PT_COMM_KIND_SNAPSHOT, 0, round * 4, step };
    pt_comm_req *rq[2] = { NULL, NULL };
    if (recv_peer >= 0)
        PT_TRY(pt_comm_irecv(c, recv_peer, &hid, &rh, sizeof rh, &rq[0]), out);
    if (send_peer >= 0)
        PT_TRY(pt_comm_isend(c, send_peer, &hid, &sh, sizeof sh, &rq[1]), out);
    PT_TRY(xwait(c, rq, 2, "with", recv_peer >= 0 ? recv_peer : send_peer), out);
    if (recv_peer >= 0 && rh.magic != SNAP_MAGIC) {
        st = pt_fail(PT_ECOMM, "rank %d: rank %d sent a snapshot header that is not one", pt_comm_rank(c), recv_peer);
        goto out;
    }
    int recv = recv_peer >= 0 && rh.have;
    int send = send_peer >= 0 && sh.have;
    if (recv) {
        char name[64];
        pt_ckpt_step_name(rh.step, name, sizeof name);
        snprintf(tmp, sizeof tmp, "%s/%s.tmp", recv_root, name);
        snprintf(rpath, sizeof rpath, "%s/%s", tmp, shard);
        PT_TRY(pt_mkdirs(recv_root), out);
        PT_TRY(pt_ckpt_remove_dir(tmp), out);
        PT_TRY(pt_mkdirs(tmp), out);
        rfd = open(rpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (rfd < 0) {
            st = pt_fail(PT_EIO, "cannot create %s: %s", rpath, strerror(errno));
            goto out;
        }
        if (!(rman = malloc(rh.manifest_bytes + 1))) {
            st = pt_fail(PT_ENOMEM, "out of host memory for a snapshot's manifest");
            goto out;
        }
    }
    /* the manifests, then the shards piece by piece, both directions at once */
    pt_msg_id mid = { PT_COMM_KIND_SNAPSHOT, 0, round * 4 + 1, step };
    if (recv)
        PT_TRY(pt_comm_irecv(c, recv_peer, &mid, rman, rh.manifest_bytes, &rq[0]), out);
    if (send)
        PT_TRY(pt_comm_isend(c, send_peer, &mid, man, man_len, &rq[1]), out);
    PT_TRY(xwait(c, rq, 2, "with", recv ? recv_peer : send_peer), out);
    if ((send && !(sbuf = malloc(SNAP_PIECE))) || (recv && !(rbuf = malloc(SNAP_PIECE)))) {
        st = pt_fail(PT_ENOMEM, "out of host memory for copying a snapshot");
        goto out;
    }
    uint64_t s_left = send ? sh.shard_bytes : 0, r_left = recv ? rh.shard_bytes : 0, off_s = 0, off_r = 0;
    for (int piece = 0; s_left > 0 || r_left > 0; piece++) {
        pt_msg_id pid = { PT_COMM_KIND_SNAPSHOT, piece & 0xffff, round * 4 + 2, step };
        size_t ns = s_left < SNAP_PIECE ? (size_t)s_left : SNAP_PIECE;
        size_t nr = r_left < SNAP_PIECE ? (size_t)r_left : SNAP_PIECE;
        rq[0] = rq[1] = NULL;
        if (nr)
            PT_TRY(pt_comm_irecv(c, recv_peer, &pid, rbuf, nr, &rq[0]), out);
        if (ns) {
            PT_TRY(read_at(sfd, spath, sbuf, ns, (off_t)off_s), out);
            PT_TRY(pt_comm_isend(c, send_peer, &pid, sbuf, ns, &rq[1]), out);
        }
        PT_TRY(xwait(c, rq, 2, "with", nr ? recv_peer : send_peer), out);
        if (nr)
            PT_TRY(write_at(rfd, rpath, rbuf, nr, (off_t)off_r), out);
        s_left -= ns;
        off_s += ns;
        r_left -= nr;
        off_r += nr;
    }
    if (recv) {
        if (fsync(rfd) != 0 && errno != EINVAL) {
            st = pt_fail(PT_EIO, "fsync %s: %s", rpath, strerror(errno));
            goto out;
        }
        close(rfd);
        rfd = -1;
        rman[rh.manifest_bytes] = 0;
        pt_ckpt_manifest *m = NULL;
        PT_TRY(pt_ckpt_manifest_parse(rman, rh.manifest_bytes, "a snapshot copy's manifest", &m), out);
        st = pt_ckpt_commit(recv_root, tmp, m, 0, 0, NULL, 0);
        pt_ckpt_manifest_destroy(m);
        if (st == PT_OK)
            *got = rh.step;
    }
out:
    if (sfd >= 0)
        close(sfd);
    if (rfd >= 0)
        close(rfd);
    free(man);
    free(rman);
    free(sbuf);
    free(rbuf);
    return st;
}

/* ---- the background copy to the buddy ---- */

static void *buddy_thread(void *arg)
{
    pt_snapshot *s = arg;
    pt_comm_set_patient(s->bcomm, 2000000); /* a background thread: leave the CPU to the training */
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->busy && !s->quit)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->busy)
            break;
        int64_t step = s->job_step;
        pthread_mutex_unlock(&s->mu);
        pt_status st = pt_ckpt_saver_wait(s->saver);
        pt_ckpt_save_info si;
        pt_ckpt_saver_info(s->saver, &si);
        int64_t t1 = pt_now_ns();
        char dir[4400], name[64];
        pt_ckpt_step_name(step, name, sizeof name);
        snprintf(dir, sizeof dir, "%s/%s", s->own, name);
        if (s->to >= 0) {
            int64_t got;
            /* even after a failed write: the buddy waits for this exchange (it then says "nothing") */
            pt_status xs = snap_exchange(s->bcomm, s->to, st == PT_OK ? dir : NULL, s->from, s->held, 0, step, &got);
            if (st == PT_OK)
                st = xs;
            if (st == PT_OK && got != step)
                st = pt_fail(PT_EIO, "rank %d: rank %d had no snapshot of step %lld to copy here (its own error says "
                                     "why)",
                             s->o.rank, s->from, (long long)step);
        }
        /* every rank holds step `step` (its own and its source's copy)? Only then do older ones go */
        char err[1024] = "";
        if (st != PT_OK)
            snprintf(err, sizeof err, "%s", pt_last_error());
        double *v = s->agree;
        memset(v, 0, sizeof(double) * (size_t)s->o.world);
        v[s->o.rank] = st != PT_OK;
        pt_status as = pt_comm_allreduce_f64(s->bcomm, NULL, v, (size_t)s->o.world,
                                             pt_deadline_after_ms(pt_comm_timeout_ms(s->bcomm)));
        int bad = -1;
        for (int r = 0; as == PT_OK && r < s->o.world && bad < 0; r++)
            if (v[r] > 0)
                bad = r;
        if (st != PT_OK)
            st = pt_fail(st, "rank %d: the snapshot of step %lld failed: %s", s->o.rank, (long long)step, err);
        else if (as != PT_OK)
            st = pt_fail_wrap(as, "rank %d: agreeing on the snapshot of step %lld failed", s->o.rank, (long long)step);
        else if (bad >= 0)
            st = pt_fail(PT_EIO, "rank %d's snapshot of step %lld failed (its error says why); training stops so that "
                                 "no restart relies on it",
                         bad, (long long)step);
        if (st == PT_OK)
            st = pt_ckpt_keep_only(s->own, step);
        if (st == PT_OK && s->from >= 0)
            st = pt_ckpt_keep_only(s->held, step);
        pthread_mutex_lock(&s->mu);
        if (st != PT_OK && s->status == PT_OK) {
            s->status = st;
            snprintf(s->msg, sizeof s->msg, "%s", pt_last_error());
        }
        s->info.write_s = si.write_s;
        s->info.buddy_s = 1e-9 * (double)(pt_now_ns() - t1);
        s->busy = 0;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- API ---- */

pt_status pt_snapshot_open(const pt_snapshot_opts *o, pt_comm *comm, pt_snapshot **out)
{
    *out = NULL;
    if (!o || !o->dir || !o->dir[0] || strlen(o->dir) >= 2000)
        return pt_fail(PT_EINVAL, "snapshots need a directory (--snapshot-dir DIR, on a memory file system)");
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world || (o->world > 1 && !comm))
        return pt_fail(PT_EINVAL, "snapshot: rank %d of %d is not a rank of the job", o->rank, o->world);
    pt_snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return pt_fail(PT_ENOMEM, "out of host memory");
    s->o = *o;
    snprintf(s->dir, sizeof s->dir, "%s", o->dir);
    s->o.dir = s->dir;
    s->prev_step = -1;
    s->info.step = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int L = o->ranks_per_node > 0 ? o->ranks_per_node : o->world;
    s->to = s->from = -1;
    if (o->world > L && o->world % L == 0) {
        s->to = (o->rank + L) % o->world;
        s->from = (o->rank - L + o->world) % o->world;
    }
    snprintf(s->own, sizeof s->own, "%s/rank-%d", s->dir, o->rank);
    if (s->from >= 0)
        snprintf(s->held, sizeof s->held, "%s/buddy-%d", s->dir, s->from);
    pt_status st;
    PT_TRY(pt_mkdirs(s->own), fail);
    PT_TRY(pt_ckpt_saver_create(s->own, 0, 0, 1, &s->saver), fail);
    if (o->world > 1) { /* the background thread: the buddy copy and the ranks' agreement */
        if (!(s->agree = calloc((size_t)o->world, sizeof(double)))) {
            st = pt_fail(PT_ENOMEM, "out of host memory");
            goto fail;
        }
        PT_TRY(pt_comm_dup(comm, pt_deadline_after_ms(pt_comm_timeout_ms(comm)), &s->bcomm), fail);
        if (pthread_create(&s->th, NULL, buddy_thread, s) != 0) {
            st = pt_fail(PT_ENOMEM, "snapshot: cannot start its thread: %s", strerror(errno));
            goto fail;
        }
        s->th_started = 1;
    }
    *out = s;
    return PT_OK;
fail:
    pt_snapshot_close(s);
    return st;
}

void pt_snapshot_close(pt_snapshot *s)
{
    if (!s)
        return;
    if (s->th_started) {
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
    }
    pt_comm_destroy(s->bcomm);
    pt_ckpt_saver_destroy(s->saver);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->agree);
    free(s);
}

pt_status pt_snapshot_reserve(pt_snapshot *s, pt_model *const *models, pt_optim *const *optims, int n)
{
    pt_ckpt_save_opts so = { .with_copies = 1 };
    return pt_ckpt_saver_reserve_ex(s->saver, models, optims, n, &so);
}

pt_status pt_snapshot_wait(pt_snapshot *s)
{
    pt_status st;
    if (s->th_started) {
        pthread_mutex_lock(&s->mu);
        while (s->busy)
            pthread_cond_wait(&s->cv, &s->mu);
        st = s->status;
        pthread_mutex_unlock(&s->mu);
        if (st != PT_OK)
            return pt_fail(st, "%s", s->msg);
        return PT_OK;
    }
    st = pt_ckpt_saver_wait(s->saver);
    if (st == PT_OK) {
        pt_ckpt_save_info si;
        pt_ckpt_saver_info(s->saver, &si);
        s->info.write_s = si.write_s;
    }
    return st;
}

pt_status pt_snapshot_take(pt_snapshot *s, pt_model *const *models, pt_optim *const *optims, int n,
                           const pt_train_state *ts)
{
    int64_t t0 = pt_now_ns();
    PT_CHECK(pt_snapshot_wait(s)); /* the previous one's failure, once every rank knows it */
    double waited = 1e-9 * (double)(pt_now_ns() - t0);
    if (!s->th_started && s->prev_step >= 0) /* one process: the previous one is complete */
        PT_CHECK(pt_ckpt_keep_only(s->own, s->prev_step));
    pt_ckpt_save_opts so = { .with_copies = 1 }; /* a rank's snapshot loads by itself */
    PT_CHECK(pt_ckpt_save_ex(s->saver, NULL, models, optims, n, ts, &so));
    pt_ckpt_save_info si;
    pt_ckpt_saver_info(s->saver, &si);
    pthread_mutex_lock(&s->mu);
    s->info.step = ts->step;
    s->info.stage_s = 1e-9 * (double)(pt_now_ns() - t0);
    s->info.waited_s = waited;
    s->info.bytes = si.raw_bytes;
    s->prev_step = ts->step;
    if (s->th_started) {
        s->job_step = ts->step;
        s->busy = 1;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return PT_OK;
}

void pt_snapshot_get_info(pt_snapshot *s, pt_snapshot_info *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->info;
    pthread_mutex_unlock(&s->mu);
}

/* The newest SNAP_HELD complete steps under root (ascending; -1 where fewer). */
static void store_steps(const char *root, int64_t out[SNAP_HELD])
{
    for (int i = 0; i < SNAP_HELD; i++)
        out[i] = -1;
    int64_t *steps = NULL;
    int n = 0;
    if (!root[0] || pt_ckpt_list(root, &steps, &n) != PT_OK) {
        pt_clear_error();
        return;
    }
    int k = 0;
    for (int i = n - 1; i >= 0 && k < SNAP_HELD; i--) {
        char name[64], dir[4400];
        pt_ckpt_step_name(steps[i], name, sizeof name);
        snprintf(dir, sizeof dir, "%s/%s", root, name);
        if (pt_ckpt_check_step(dir) == PT_OK)
            out[SNAP_HELD - 1 - k++] = steps[i];
        else
            pt_clear_error();
    }
    free(steps);
}

static int has_step(const double *v, int64_t x)
{
    for (int i = 0; i < SNAP_HELD; i++)
        if (v[i] > 0 && (int64_t)v[i] - 1 == x)
            return 1;
    return 0;
}

pt_status pt_snapshot_restore(pt_snapshot *s, pt_comm *comm, int64_t disk_step, pt_model *const *models,
                              pt_optim *const *optims, int n, pt_train_state *ts, pt_snapshot_restore_info *info)
{
    memset(info, 0, sizeof *info);
    info->step = -1;
    const int W = s->o.world, me = s->o.rank, per = 2 * SNAP_HELD;
    int L = s->o.ranks_per_node > 0 ? s->o.ranks_per_node : W;
    int buddies = s->to >= 0;
    int64_t deadline_ms = comm ? pt_comm_timeout_ms(comm) : 0;
    /* v[q * per + i]: step + 1 of q's own snapshots (i < SNAP_HELD) and of the copies q holds */
    double *v = calloc((size_t)W * (size_t)per + 2 * (size_t)W, sizeof(double));
    if (!v)
        return pt_fail(PT_ENOMEM, "out of host memory");
    double *fail = v + (size_t)W * (size_t)per, *fail2 = fail + W;
    int64_t mine[SNAP_HELD], held[SNAP_HELD];
    store_steps(s->own, mine);
    store_steps(s->from >= 0 ? s->held : "", held);
    for (int i = 0; i < SNAP_HELD; i++) {
        v[(size_t)me * per + i] = (double)(mine[i] + 1);
        v[(size_t)me * per + SNAP_HELD + i] = (double)(held[i] + 1);
    }
    pt_status st = PT_OK;
    if (comm && W > 1)
        PT_TRY(pt_comm_allreduce_f64(comm, NULL, v, (size_t)W * (size_t)per, pt_deadline_after_ms(deadline_ms)), out);
    /* the newest step every rank q has, in its memory or in the copy its buddy (q + L) % W keeps */
    int64_t best = -1;
    for (int c = 0; c < W * per; c++) {
        int64_t x = (int64_t)v[c] - 1;
        if (x <= best || x <= disk_step)
            continue;
        int all = 1;
        for (int q = 0; q < W && all; q++)
            all = has_step(v + (size_t)q * per, x) ||
                  (buddies && has_step(v + (size_t)((q + L) % W) * per + SNAP_HELD, x));
        if (all)
            best = x;
    }
    if (best < 0) {
        int64_t newest = -1;
        for (int c = 0; c < W * per; c++)
            newest = (int64_t)v[c] - 1 > newest ? (int64_t)v[c] - 1 : newest;
        if (newest > disk_step)
            snprintf(info->note, sizeof info->note,
                     "no snapshot step is held by every rank or its buddy (the newest is step %lld); resuming from the "
                     "disk checkpoint",
                     (long long)newest);
        goto out;
    }
    char name[64], own_dir[4400], held_dir[4400];
    pt_ckpt_step_name(best, name, sizeof name);
    snprintf(own_dir, sizeof own_dir, "%s/%s", s->own, name);
    snprintf(held_dir, sizeof held_dir, "%s/%s", s->held, name);
    int64_t t0 = pt_now_ns();
    /* round 0: the ranks without their own copy of `best` receive it from their buddy; then every
     * rank loads. Round 1: a rank whose own copy failed to load (a checksum) receives the buddy's
     * copy and loads again. fail[q] / fail2[q]: rank q could not load after round 0 / 1. */
    pt_train_state got = { 0 };
    int fetched = 0, damaged = 0;
    for (int round = 0; round < 2; round++) {
        int need_me = 0, need_src = 0, any = 0;
        for (int q = 0; q < W; q++) {
            const double *bq = v + (size_t)((q + L) % W) * per + SNAP_HELD; /* the copy q's buddy keeps */
            int own_q = has_step(v + (size_t)q * per, best);
            int need = round == 0 ? !own_q : fail[q] > 0 && own_q && buddies && has_step(bq, best);
            any |= need;
            fetched += need;
            damaged += round == 1 && fail[q] > 0 && own_q;
            if (q == me)
                need_me = need;
            if (buddies && q == s->from)
                need_src = need;
        }
        if (round == 1 && !any)
            break;
        if (any && buddies) {
            int64_t rcv = -1;
            if (need_me)
                PT_TRY(pt_ckpt_remove_dir(own_dir), out);
            PT_TRY(snap_exchange(comm, need_src ? s->from : -1, held_dir, need_me ? s->to : -1, s->own, 1 + round, best,
                                 &rcv),
                   out);
            if (need_me && rcv != best) {
                st = pt_fail(PT_EIO, "rank %d: its buddy rank %d had no copy of snapshot step %lld", me, s->to,
                             (long long)best);
                goto out;
            }
        }
        double *f = round == 0 ? fail : fail2;
        memset(f, 0, sizeof(double) * (size_t)W);
        if (round == 0 || need_me) {
            pt_ckpt_load_info li;
            memset(&li, 0, sizeof li);
            free((void *)got.run_json);
            memset(&got, 0, sizeof got);
            info->touched = 1;
            if (pt_ckpt_load_ex(own_dir, models, optims, n, &got, NULL, NULL, &li) != PT_OK) {
                fprintf(stderr, "rank %d: its snapshot of step %lld (%s) could not be loaded: %s\n", me,
                        (long long)best, own_dir, pt_last_error());
                pt_clear_error();
                f[me] = 1;
            }
        } else {
            f[me] = fail[me]; /* nothing to retry with */
        }
        if (comm && W > 1)
            PT_TRY(pt_comm_allreduce_f64(comm, NULL, f, (size_t)W, pt_deadline_after_ms(deadline_ms)), out);
        if (round == 0)
            memcpy(fail2, fail, sizeof(double) * (size_t)W);
    }
    info->fetch_s = 1e-9 * (double)(pt_now_ns() - t0);
    int bad = -1;
    for (int q = 0; q < W && bad < 0; q++)
        if (fail2[q] > 0)
            bad = q;
    if (bad >= 0) {
        snprintf(info->note, sizeof info->note,
                 "rank %d could load snapshot step %lld neither from its memory nor from its buddy (its error says "
                 "why); resuming from the disk checkpoint",
                 bad, (long long)best);
        free((void *)got.run_json);
        goto out;
    }
    /* snapshots newer than `best` some ranks still hold are of a past the run no longer has */
    PT_TRY(pt_ckpt_keep_only(s->own, best), out);
    if (s->from >= 0)
        PT_TRY(pt_ckpt_keep_only(s->held, best), out);
    s->prev_step = best;
    info->from_buddy = fetched;
    info->damaged = damaged;
    info->step = best;
    info->source = fetched > 0 ? PT_SNAPSHOT_BUDDY : PT_SNAPSHOT_MEMORY;
    if (fetched > 0)
        snprintf(info->note, sizeof info->note, "%d rank(s) took their snapshot from their buddy's copy%s", fetched,
                 damaged ? ": their own failed its checksums" : "");
    *ts = got;
out:
    free(v);
    return st;
}

pt_status pt_snapshot_discard(pt_snapshot *s)
{
    PT_CHECK(pt_snapshot_wait(s));
    PT_CHECK(pt_ckpt_keep_only(s->own, -1));
    if (s->from >= 0)
        PT_CHECK(pt_ckpt_keep_only(s->held, -1));
    s->prev_step = -1;
    return PT_OK;
}

pt_status pt_snapshot_remove(pt_snapshot *s)
{
    pt_status st = pt_snapshot_wait(s);
    pt_clear_error();
    (void)st;
    const char *roots[2] = { s->own, s->from >= 0 ? s->held : NULL };
    for (int i = 0; i < 2; i++) {
        if (!roots[i])
            continue;
        char rec[4400];
        PT_CHECK(pt_ckpt_keep_only(roots[i], -1));
        snprintf(rec, sizeof rec, "%s/recycle", roots[i]);
        PT_CHECK(pt_ckpt_remove_dir(rec));
        PT_CHECK(pt_ckpt_remove_dir(roots[i]));
    }
    (void)rmdir(s->dir); /* the last rank of the node to finish removes the store's directory */
    return PT_OK;
}

/* Removes one store: its checkpoint roots (rank-R, buddy-Q: steps, recycle/, latest), then itself. */
static pt_status remove_store(const char *store)
{
    DIR *d = opendir(store);
    if (!d)
        return errno == ENOENT ? PT_OK : pt_fail(PT_EIO, "cannot open %s: %s", store, strerror(errno));
    pt_status st = PT_OK;
    struct dirent *de;
    while ((de = readdir(d)) && st == PT_OK) {
        if (de->d_name[0] == '.')
            continue;
        char root[4700], rec[4800];
        snprintf(root, sizeof root, "%s/%s", store, de->d_name);
        snprintf(rec, sizeof rec, "%s/recycle", root);
        st = pt_ckpt_keep_only(root, -1);
        if (st == PT_OK)
            st = pt_ckpt_remove_dir(rec);
        if (st == PT_OK)
            st = pt_ckpt_remove_dir(root);
    }
    closedir(d);
    if (st == PT_OK && rmdir(store) != 0 && errno != ENOENT)
        st = pt_fail(PT_EIO, "cannot remove %s: %s", store, strerror(errno));
    return st;
}

pt_status pt_snapshot_remove_others(const char *dir)
{
    char parent[2048];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (!slash || !slash[1])
        return PT_OK;
    const char *mine = slash + 1;
    *slash = 0;
    DIR *d = opendir(parent[0] ? parent : "/");
    if (!d)
        return PT_OK; /* nothing there yet */
    pt_status st = PT_OK;
    struct dirent *de;
    while ((de = readdir(d)) && st == PT_OK) {
        if (strncmp(de->d_name, "layout-", 7) != 0 || strcmp(de->d_name, mine) == 0)
            continue;
        char store[4200];
        snprintf(store, sizeof store, "%s/%s", parent, de->d_name);
        st = remove_store(store);
    }
    closedir(d);
    return st;
}

