/* Gradient reduction overlapped with the backward (pipetrain/grad_sync.h): a thread with its own
 * communicator (a pt_comm_dup) walks the registered buckets in their fixed order, step after step,
 * and runs each bucket's collectives as soon as the main thread has marked all of its elements
 * final.
 *
 * State shared with the thread is guarded by one mutex: the step generation (`gen`, bumped by
 * begin), the generation the thread has finished (`done_gen`), each bucket's count of elements
 * not yet marked (`remaining`), the index of the next bucket the thread reduces (`next`), and the
 * error. The main thread never touches the dup; the thread never touches anything of the runtime
 * but the registered gradient buffers, in the ranges of buckets that are ready. */
#include "pipetrain/grad_sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipetrain/backend.h"
#include "pipetrain/timeutil.h"

#define GS_MAX_CHUNKS 256
#define GS_MAX_NAP_NS 1000000 /* the thread's waits nap up to 1 ms (pt_comm_set_patient) */

typedef struct gs_chunk {
    float *grads;
    size_t n;
    int registered;
} gs_chunk;

typedef struct gs_bucket {
    int chunk;
    size_t lo, hi;
    size_t remaining;            /* elements not yet marked ready this step (guarded) */
    int64_t ready_ns, start_ns, end_ns;
} gs_bucket;

struct pt_grad_sync {
    pt_comm *dup;
    pt_comm_group *g;
    int rank, D, zero;
    int64_t timeout_ms;
    gs_chunk chunks[GS_MAX_CHUNKS];
    gs_bucket *b;
    int nb, cap_b;
    float *stage;                /* pt_comm_buf_alloc buffer of the largest bucket (NULL: reduce in place) */
    size_t stage_floats;
    pthread_t thread;
    int thread_on;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;      /* the thread waits here: a new step, a bucket ready, stop/abort */
    pthread_cond_t cv_done;      /* the main thread waits here: the step's buckets done, or an error */
    int64_t gen, done_gen;       /* steps begun / steps the thread has finished with */
    int64_t step;                /* the step number of generation gen (errors) */
    int in_step;                 /* between begin and finish (or abort) */
    int next;                    /* next bucket the thread reduces this step */
    int busy;                    /* the thread is inside bucket `next`'s collectives */
    int stop, abort_step;
    int broken;                  /* a step failed or was abandoned: no more steps */
    pt_status err;
    char err_msg[1024];
};

static void set_err_locked(pt_grad_sync *gs, pt_status code, const char *msg)
{
    if (gs->err == PT_OK) {
        gs->err = code;
        snprintf(gs->err_msg, sizeof gs->err_msg, "%s", msg);
    }
    gs->broken = 1;
}

static pt_status reported(const pt_grad_sync *gs) { return pt_fail(gs->err, "%s", gs->err_msg); }

/* ---- the thread ---- */

/* The collectives of bucket b, on the dup (not under the lock). Staged: the bucket's elements are
 * copied into the shared staging buffer first, so that what the collectives send leaves by the
 * direct path to same-host peers (one copy by the receiver, comm.h's pt_comm_buf_alloc), and the
 * result is copied back: this replica's segment, and with zero 0 the gathered rest. The values and
 * the order of every sum are those of the in-place call. `base` addresses element 0 of the chunk
 * so that elements [lo, hi) fall on the staging buffer (only those are touched). */
static pt_status bucket_run(pt_grad_sync *gs, const gs_bucket *bk, int64_t step, int bi)
{
    const gs_chunk *ck = &gs->chunks[bk->chunk];
    size_t len = bk->hi - bk->lo;
    float *base = ck->grads;
    if (gs->stage) {
        memcpy(gs->stage, ck->grads + bk->lo, len * sizeof(float));
        base = (float *)((uintptr_t)gs->stage - (uintptr_t)bk->lo * sizeof(float));
    }
    int64_t deadline = pt_deadline_after_ms(gs->timeout_ms);
    pt_status st = pt_comm_reduce_scatter_range(gs->dup, gs->g, base, ck->n, bk->lo, bk->hi, deadline);
    const char *what = "reduce-scatter";
    if (st == PT_OK && !gs->zero) {
        what = "all-gather";
        st = pt_comm_allgather_range(gs->dup, gs->g, base, ck->n, bk->lo, bk->hi, pt_deadline_after_ms(gs->timeout_ms));
    }
    if (st == PT_OK && gs->stage) {
        size_t a = bk->lo, z = bk->hi; /* zero 1: only this replica's segment changed */
        if (gs->zero) {
            size_t slo, shi;
            pt_comm_segment(ck->n, gs->D, pt_comm_group_rank(gs->g), &slo, &shi);
            a = slo > a ? slo : a;
            z = shi < z ? shi : z;
        }
        if (a < z)
            memcpy(ck->grads + a, gs->stage + (a - bk->lo), (z - a) * sizeof(float));
    }
    if (st != PT_OK)
        return pt_fail_wrap(st, "rank %d: overlapped data-parallel %s of step %lld, bucket %d of %d (chunk %d, "
                                "gradient elements [%zu, %zu))",
                            gs->rank, what, (long long)step, bi, gs->nb, bk->chunk, bk->lo, bk->hi);
    return PT_OK;
}

static void *thread_main(void *arg)
{
    pt_grad_sync *gs = arg;
    pt_comm_set_patient(gs->dup, GS_MAX_NAP_NS); /* its waits leave the CPU to the backward */
    pthread_mutex_lock(&gs->mu);
    for (;;) {
        while (!gs->stop && gs->done_gen == gs->gen)
            pthread_cond_wait(&gs->cv_work, &gs->mu);
        if (gs->stop)
            break;
        int64_t step = gs->step;
        for (gs->next = 0; gs->next < gs->nb; gs->next++) {
            gs_bucket *bk = &gs->b[gs->next];
            while (!gs->stop && !gs->abort_step && bk->remaining > 0)
                pthread_cond_wait(&gs->cv_work, &gs->mu);
            if (gs->stop || gs->abort_step)
                break;
            gs->busy = 1;
            int bi = gs->next;
            pthread_mutex_unlock(&gs->mu);
            int64_t t0 = pt_now_ns();
            pt_status st = bucket_run(gs, bk, step, bi);
            int64_t t1 = pt_now_ns();
            pthread_mutex_lock(&gs->mu);
            gs->busy = 0;
            bk->start_ns = t0;
            bk->end_ns = t1;
            if (st != PT_OK) {
                set_err_locked(gs, st, pt_last_error());
                break;
            }
        }
        gs->done_gen = gs->gen;
        pthread_cond_broadcast(&gs->cv_done);
    }
    pthread_mutex_unlock(&gs->mu);
    return NULL;
}

/* ---- the main thread's side ---- */

pt_status pt_grad_sync_create(pt_comm *c, const int *dp_ranks, int D, const pt_grad_sync_opts *o, pt_grad_sync **out)
{
    if (!out)
        return pt_fail(PT_EINVAL, "pt_grad_sync_create: out is NULL");
    *out = NULL;
    if (!c || !dp_ranks || D < 1)
        return pt_fail(PT_EINVAL, "pt_grad_sync_create: a communicator and a data-parallel group of at least one "
                                  "rank are required (got %d)",
                       D);
    pt_grad_sync *gs = calloc(1, sizeof *gs);
    if (!gs)
        return pt_fail(PT_ENOMEM, "out of memory for the gradient reduction engine");
    gs->rank = pt_comm_rank(c);
    gs->D = D;
    gs->zero = o ? o->zero != 0 : 0;
    gs->timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : pt_comm_timeout_ms(c);
    pthread_mutex_init(&gs->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* pt_now_ns's clock: deadlines convert directly */
    pthread_cond_init(&gs->cv_work, &ca);
    pthread_cond_init(&gs->cv_done, &ca);
    pthread_condattr_destroy(&ca);
    pt_status st = pt_comm_dup(c, pt_deadline_after_ms(gs->timeout_ms), &gs->dup);
    if (st == PT_OK)
        st = pt_comm_group_create(gs->dup, dp_ranks, D, &gs->g);
    if (st != PT_OK) {
        pt_fail_wrap(st, "rank %d: the overlapped gradient reduction's communicator", gs->rank);
        pt_grad_sync_destroy(gs);
        return st;
    }
    *out = gs;
    return PT_OK;
}

pt_status pt_grad_sync_add_chunk(pt_grad_sync *gs, int chunk, float *grads, size_t n)
{
    if (!gs || gs->thread_on)
        return pt_fail(PT_EINVAL, "pt_grad_sync_add_chunk: %s", gs ? "the engine has started" : "no engine");
    if (chunk < 0 || chunk >= GS_MAX_CHUNKS || gs->chunks[chunk].registered)
        return pt_fail(PT_EINVAL, "rank %d: gradient chunk %d: %s", gs->rank, chunk,
                       chunk < 0 || chunk >= GS_MAX_CHUNKS ? "chunks are numbered 0..255" : "registered twice");
    if (n > 0 && !grads)
        return pt_fail(PT_EINVAL, "rank %d: gradient chunk %d: %zu elements in a NULL buffer", gs->rank, chunk, n);
    gs->chunks[chunk] = (gs_chunk){ .grads = grads, .n = n, .registered = 1 };
    return PT_OK;
}

pt_status pt_grad_sync_add_bucket(pt_grad_sync *gs, int chunk, size_t lo, size_t hi)
{
    if (!gs || gs->thread_on)
        return pt_fail(PT_EINVAL, "pt_grad_sync_add_bucket: %s", gs ? "the engine has started" : "no engine");
    if (chunk < 0 || chunk >= GS_MAX_CHUNKS || !gs->chunks[chunk].registered)
        return pt_fail(PT_EINVAL, "rank %d: gradient bucket of chunk %d, which is not registered", gs->rank, chunk);
    const gs_chunk *ck = &gs->chunks[chunk];
    if (lo >= hi || hi > ck->n)
        return pt_fail(PT_EINVAL, "rank %d: gradient bucket [%zu, %zu) of chunk %d is empty or outside its %zu "
                                  "elements",
                       gs->rank, lo, hi, chunk, ck->n);
    for (int i = 0; i < gs->nb; i++)
        if (gs->b[i].chunk == chunk && lo < gs->b[i].hi && gs->b[i].lo < hi)
            return pt_fail(PT_EINVAL, "rank %d: gradient bucket [%zu, %zu) of chunk %d overlaps bucket %d [%zu, %zu)",
                           gs->rank, lo, hi, chunk, i, gs->b[i].lo, gs->b[i].hi);
    if (gs->nb == gs->cap_b) {
        int cap = gs->cap_b ? 2 * gs->cap_b : 16;
        gs_bucket *nbk = realloc(gs->b, sizeof *nbk * (size_t)cap);
        if (!nbk)
            return pt_fail(PT_ENOMEM, "out of memory for gradient buckets");
        gs->b = nbk;
        gs->cap_b = cap;
    }
    gs->b[gs->nb++] = (gs_bucket){ .chunk = chunk, .lo = lo, .hi = hi };
    return PT_OK;
}

pt_status pt_grad_sync_start(pt_grad_sync *gs)
{
    if (!gs || gs->thread_on)
        return pt_fail(PT_EINVAL, "pt_grad_sync_start: %s", gs ? "already started" : "no engine");
    for (int c = 0; c < GS_MAX_CHUNKS; c++) {
        if (!gs->chunks[c].registered)
            continue;
        size_t covered = 0; /* buckets do not overlap: coverage is their total */
        for (int i = 0; i < gs->nb; i++)
            if (gs->b[i].chunk == c)
                covered += gs->b[i].hi - gs->b[i].lo;
        if (covered != gs->chunks[c].n) {
            size_t first = 0; /* the first element no bucket holds */
            for (int moved = 1; moved;) {
                moved = 0;
                for (int i = 0; i < gs->nb; i++)
                    if (gs->b[i].chunk == c && gs->b[i].lo <= first && first < gs->b[i].hi) {
                        first = gs->b[i].hi;
                        moved = 1;
                    }
            }
            return pt_fail(PT_EINVAL, "rank %d: the gradient buckets of chunk %d cover %zu of its %zu elements (element "
                                      "%zu is in none); add buckets for the rest",
                           gs->rank, c, covered, gs->chunks[c].n, first);
        }
    }
    size_t most = 0;
    for (int i = 0; i < gs->nb; i++)
        most = gs->b[i].hi - gs->b[i].lo > most ? gs->b[i].hi - gs->b[i].lo : most;
    if (gs->D > 1 && most > 0 && pt_comm_buf_alloc(most * sizeof(float), (void **)&gs->stage) == PT_OK) {
        gs->stage_floats = most;
        pt_backend_account_kind((long long)(most * sizeof(float)), PT_MEM_COMM); /* measured like the link's */
    } else
        gs->stage = NULL; /* in place: the transport's own path */
    pt_clear_error();
    if (pthread_create(&gs->thread, NULL, thread_main, gs) != 0)
        return pt_fail(PT_ENOMEM, "rank %d: could not start the gradient reduction thread", gs->rank);
    gs->thread_on = 1;
    return PT_OK;
}

/* Waits on cv_done until pred() or the deadline; returns 0 when the deadline passed first. */
static int wait_done_until(pt_grad_sync *gs, int64_t deadline_ns, int (*pred)(const pt_grad_sync *))
{
    while (!pred(gs)) {
        if (deadline_ns == INT64_MAX) {
            pthread_cond_wait(&gs->cv_done, &gs->mu);
            continue;
        }
        if (pt_now_ns() >= deadline_ns)
            return 0;
        struct timespec ts = { .tv_sec = deadline_ns / 1000000000LL, .tv_nsec = deadline_ns % 1000000000LL };
        int r = pthread_cond_timedwait(&gs->cv_done, &gs->mu, &ts);
        if (r != 0 && r != ETIMEDOUT && r != EINTR)
            return 0;
    }
    return 1;
}

static int thread_idle(const pt_grad_sync *gs) { return gs->done_gen == gs->gen; }
static int step_over(const pt_grad_sync *gs) { return gs->done_gen == gs->gen || gs->err != PT_OK; }

pt_status pt_grad_sync_begin(pt_grad_sync *gs, int64_t step)
{
    if (!gs || !gs->thread_on)
        return pt_fail(PT_EINVAL, "pt_grad_sync_begin: %s", gs ? "the engine has not started" : "no engine");
    pthread_mutex_lock(&gs->mu);
    pt_status st = PT_OK;
    if (!wait_done_until(gs, pt_deadline_after_ms(2 * gs->timeout_ms), thread_idle))
        set_err_locked(gs, PT_ETIMEDOUT, "the gradient reduction thread is still busy with an abandoned step");
    if (gs->broken) {
        if (gs->err == PT_OK)
            set_err_locked(gs, PT_ECOMM, "an earlier step's overlapped gradient reduction was abandoned");
        char msg[1200];
        snprintf(msg, sizeof msg, "rank %d: step %lld cannot reduce its gradients: %s", gs->rank, (long long)step,
                 gs->err_msg);
        st = pt_fail(gs->err, "%s", msg);
    } else {
        for (int i = 0; i < gs->nb; i++) {
            gs->b[i].remaining = gs->b[i].hi - gs->b[i].lo;
            gs->b[i].ready_ns = gs->b[i].start_ns = gs->b[i].end_ns = 0;
        }
        gs->step = step;
        gs->next = 0;
        gs->abort_step = 0;
        gs->in_step = 1;
        gs->gen++;
        pthread_cond_signal(&gs->cv_work);
    }
    pthread_mutex_unlock(&gs->mu);
    return st;
}

pt_status pt_grad_sync_ready(pt_grad_sync *gs, int chunk, size_t lo, size_t hi)
{
    if (!gs)
        return pt_fail(PT_EINVAL, "pt_grad_sync_ready: no engine");
    if (chunk < 0 || chunk >= GS_MAX_CHUNKS || !gs->chunks[chunk].registered || lo > hi || hi > gs->chunks[chunk].n)
        return pt_fail(PT_EINVAL, "rank %d: gradient elements [%zu, %zu) of chunk %d marked ready: not a range of a "
                                  "registered chunk",
                       gs->rank, lo, hi, chunk);
    if (lo == hi)
        return PT_OK;
    pt_status st = PT_OK;
    int wake = 0;
    int64_t now = pt_now_ns();
    pthread_mutex_lock(&gs->mu);
    if (!gs->in_step) {
        st = pt_fail(PT_EINVAL, "rank %d: gradient elements [%zu, %zu) of chunk %d marked ready outside a step "
                                "(pt_grad_sync_begin first)",
                     gs->rank, lo, hi, chunk);
    } else if (!gs->abort_step) {
        for (int i = 0; i < gs->nb && st == PT_OK; i++) {
            gs_bucket *bk = &gs->b[i];
            if (bk->chunk != chunk || hi <= bk->lo || bk->hi <= lo)
                continue;
            size_t a = lo > bk->lo ? lo : bk->lo, z = hi < bk->hi ? hi : bk->hi;
            if (z - a > bk->remaining) {
                st = pt_fail(PT_EINVAL, "rank %d: step %lld: gradient elements [%zu, %zu) of chunk %d marked ready "
                                        "twice (bucket %d [%zu, %zu))",
                             gs->rank, (long long)gs->step, lo, hi, chunk, i, bk->lo, bk->hi);
                break;
            }
            bk->remaining -= z - a;
            if (bk->remaining == 0) {
                bk->ready_ns = now;
                wake |= i == gs->next;
            }
        }
    }
    if (wake)
        pthread_cond_signal(&gs->cv_work);
    pthread_mutex_unlock(&gs->mu);
    return st;
}

pt_status pt_grad_sync_finish(pt_grad_sync *gs, int64_t deadline_ns, int64_t *exposed_ns)
{
    if (exposed_ns)
        *exposed_ns = 0;
    if (!gs || !gs->thread_on)
        return pt_fail(PT_EINVAL, "pt_grad_sync_finish: %s", gs ? "the engine has not started" : "no engine");
    int64_t t0 = pt_now_ns();
    pthread_mutex_lock(&gs->mu);
    if (!gs->in_step) {
        pthread_mutex_unlock(&gs->mu);
        return pt_fail(PT_EINVAL, "rank %d: pt_grad_sync_finish outside a step (pt_grad_sync_begin first)", gs->rank);
    }
    pt_status st = PT_OK;
    if (!wait_done_until(gs, deadline_ns, step_over)) {
        int i = gs->next < gs->nb ? gs->next : gs->nb - 1;
        const gs_bucket *bk = &gs->b[i];
        char msg[600];
        if (gs->busy)
            snprintf(msg, sizeof msg, "rank %d: step %lld: the overlapped data-parallel reduction of bucket %d of %d "
                                      "(chunk %d, gradient elements [%zu, %zu)) did not finish by the deadline; a "
                                      "replica of this stage is slow, stopped or gone",
                     gs->rank, (long long)gs->step, i, gs->nb, bk->chunk, bk->lo, bk->hi);
        else
            snprintf(msg, sizeof msg, "rank %d: step %lld: gradient bucket %d of %d (chunk %d, elements [%zu, %zu)) "
                                      "was never marked ready (%zu elements missing) by the time the reduction was "
                                      "due; every element must be marked once per step",
                     gs->rank, (long long)gs->step, i, gs->nb, bk->chunk, bk->lo, bk->hi, bk->remaining);
        set_err_locked(gs, gs->busy ? PT_ETIMEDOUT : PT_EINVAL, msg);
        gs->abort_step = 1;
        pthread_cond_signal(&gs->cv_work);
    }
    if (gs->err != PT_OK) {
        gs->abort_step = 1; /* the thread leaves the step if it is still waiting */
        pthread_cond_signal(&gs->cv_work);
        st = reported(gs);
    }
    gs->in_step = 0;
    pthread_mutex_unlock(&gs->mu);
    if (exposed_ns)
        *exposed_ns = pt_now_ns() - t0;
    return st;
}

void pt_grad_sync_abort(pt_grad_sync *gs)
{
    if (!gs)
        return;
    pthread_mutex_lock(&gs->mu);
    if (gs->in_step) {
        gs->abort_step = 1;
        gs->broken = 1;
        gs->in_step = 0;
        pthread_cond_signal(&gs->cv_work);
    }
    pthread_mutex_unlock(&gs->mu);
}

int pt_grad_sync_n_buckets(const pt_grad_sync *gs) { return gs ? gs->nb : 0; }

size_t pt_grad_sync_stage_bytes(const pt_grad_sync *gs) { return gs ? gs->stage_floats * sizeof(float) : 0; }
uint64_t pt_grad_sync_direct_bytes(const pt_grad_sync *gs) { return gs ? pt_comm_direct_bytes(gs->dup) : 0; }

pt_status pt_grad_sync_bucket(const pt_grad_sync *gs, int b, pt_grad_sync_bucket_info *out)
{
    if (!gs || !out || b < 0 || b >= gs->nb)
        return pt_fail(PT_EINVAL, "pt_grad_sync_bucket: bucket %d of %d", b, gs ? gs->nb : 0);
    const gs_bucket *bk = &gs->b[b];
    *out = (pt_grad_sync_bucket_info){ .chunk = bk->chunk, .lo = bk->lo, .hi = bk->hi, .ready_ns = bk->ready_ns,
                                       .start_ns = bk->start_ns, .end_ns = bk->end_ns };
    return PT_OK;
}

void pt_grad_sync_destroy(pt_grad_sync *gs)
{
    if (!gs)
        return;
    if (gs->thread_on) {
        pthread_mutex_lock(&gs->mu);
        gs->stop = 1;
        gs->abort_step = 1;
        pthread_cond_signal(&gs->cv_work);
        pthread_mutex_unlock(&gs->mu);
        pthread_join(gs->thread, NULL); /* a collective in flight ends by its deadline */
    }
    pt_comm_group_destroy(gs->g);
    pt_comm_destroy(gs->dup);
    pt_comm_buf_free(gs->stage);
    if (gs->stage)
        pt_backend_account_kind(-(long long)(gs->stage_floats * sizeof(float)), PT_MEM_COMM);
    pthread_cond_destroy(&gs->cv_work);
    pthread_cond_destroy(&gs->cv_done);
    pthread_mutex_destroy(&gs->mu);
    free(gs->b);
    free(gs);
}
