/* Tensor parallelism of the model alone (pt_model_opts.tp, models/model.c): T model instances of one
 * chunk in one process, one pthread each, joined by in-process collectives (a shared buffer and a
 * barrier: sums left to right in float over ranks 0..T-1, the bits of pt_comm_reduce_scatter, every
 * rank getting the same bits; reduce-scatter and all-gather by pt_comm_segment), against the T = 1
 * model of the same config and seed.
 *
 * For gpt2-tiny, llama-tiny (4 heads on 2 kv heads: T = 4 replicates each kv head on 2 ranks) and a
 * 3-block llama with the other tying, 8 heads on 4 kv heads and vocabulary 250 padded to 256; T in
 * {2, 4}; sp 0 and 1; chunks: the whole model, blocks only, the head alone, the embedding and blocks
 * (a partial chunk gets its input and output gradient from the T = 1 pipeline around it; with sp
 * rank t gets rows [t N/T, (t+1) N/T) of the N = B * T_seq tokens, which cut through sequences),
 * each with two micro-batches in flight (two slots), and every weight moved by a small function of
 * (name, global element) after pt_model_init_weights so that biases and norm weights matter:
 *  - the initial weights: every rank's slice is the T = 1 tensor's elements, bit for bit, and the
 *    slice metadata (gshape, tp_dim, tp_nseg, tp_lo/hi, rep_*) covers each whole tensor exactly
 *    once, or rep_n times inside a replicated range;
 *  - losses, greedy predictions (exactly), the chunk's output and input gradient, and every
 *    parameter gradient reassembled from the ranks' slices (a replicated range without
 *    rep_partial: every holder's copy, which must be the same bits on every holder; with
 *    rep_partial (norms under sp, replicated kv heads): the sum over the holders in rank order)
 *    against T = 1, to a relative error of TOL = 2e-5 per element against the largest magnitude of
 *    the tensor: the row-parallel products (attn.proj, mlp.proj / mlp.down, the input gradients of
 *    qkv, fc / gate_up and the LM head) sum their inner dimension in T pieces and then add the
 *    pieces, where T = 1 sums it in one run; the softmax comes from T rows' statistics combined;
 *    partial gradients (norms under sp, replicated kv heads) are summed over ranks; and GEMMs of
 *    other shapes may block their sums differently. So the results differ by float rounding
 *    (about 1e-7 relative per product), grown a little through the layers. Measured maxima are
 *    printed per case (at most 1.5e-6 here; TOL leaves room for other BLAS builds);
 *  - the grad hook (pt_model_set_grad_hook) reports every gradient element once per backward pass;
 *  - bit for bit: a second run of the same T; the split backward (backward_input of both slots,
 *    then backward_weight of both) against the fused one; recompute 1 against 0; fused_only 1
 *    (with and without recompute) against fused_only 0. Every collective is also checked to be
 *    called in the same order, with the same size and name, on every rank, and the parts of a
 *    reduce-scatter's buffer outside the caller's segment are overwritten with NaN (they are
 *    undefined by contract), so a model reading them fails the comparison.
 * And pt_model_tp_check's / pt_model_create's refusals. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipetrain/comm.h"
#include "pipetrain/model.h"
#include "test_common.h"

/* B = 3 sequences of 8: with sp the ranks' rows (12 or 6) cut through sequences */
enum { MB = 2, BATCH = 3, SEQ = 8, NTOK = BATCH * SEQ, MAXT = 4 };

/* Relative error allowed per element against the tensor's largest magnitude (see the top). */
#define TOL 2e-5

static const pt_backend *be;

/* ---- in-process collectives ---- */

typedef struct group {
    int size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived, aborted;
    unsigned gen;
    float *buf[MAXT];
    size_t n[MAXT];
    int op[MAXT];
    char what[MAXT][128];
    float *tmp; /* the sums, written segment by segment by their owners */
    size_t cap;
} group;

typedef struct rank_ctx {
    group *g;
    int rank;
    pt_stream *stream;
    int calls;
} rank_ctx;

static void group_abort(group *g)
{
    pthread_mutex_lock(&g->mu);
    g->aborted = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Returns once every member has arrived; PT_ECOMM when a member failed, PT_ETIMEDOUT after 60 s. */
static pt_status group_wait(group *g, const char *what)
{
    pthread_mutex_lock(&g->mu);
    unsigned gen = g->gen;
    if (!g->aborted && ++g->arrived == g->size) {
        g->arrived = 0;
        g->gen++;
        pthread_cond_broadcast(&g->cv);
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 60;
    while (g->gen == gen && !g->aborted)
        if (pthread_cond_timedwait(&g->cv, &g->mu, &dl) == ETIMEDOUT) {
            g->aborted = 1;
            pthread_cond_broadcast(&g->cv);
            pthread_mutex_unlock(&g->mu);
            return pt_fail(PT_ETIMEDOUT, "%s: a member of the group did not arrive within 60 s", what);
        }
    int done = g->gen != gen;
    pthread_mutex_unlock(&g->mu);
    return done ? PT_OK : pt_fail(PT_ECOMM, "%s: another member of the group failed", what);
}

/* op 0 all-reduce, 1 reduce-scatter, 2 all-gather. */
static pt_status collective(void *ctx, int op, float *x, size_t n, const char *what)
{
    rank_ctx *rc = ctx;
    group *g = rc->g;
    const int r = rc->rank, T = g->size;
    rc->calls++;
    PT_CHECK(be->stream_sync(rc->stream));
    g->buf[r] = x;
    g->n[r] = n;
    g->op[r] = op;
    snprintf(g->what[r], sizeof g->what[r], "%s", what);
    PT_CHECK(group_wait(g, what));
    for (int k = 0; k < T; k++)
        if (g->n[k] != n || g->op[k] != op || strcmp(g->what[k], what) != 0)
            return pt_fail(PT_EINTERNAL, "rank %d calls %s (%zu floats, op %d) where rank %d calls %s (%zu, op %d)", r,
                           what, n, op, k, g->what[k], g->n[k], g->op[k]);
    size_t lo, hi;
    pt_comm_segment(n, T, r, &lo, &hi);
    if (op == 2) {
        for (int k = 0; k < T; k++) {
            size_t a, b;
            pt_comm_segment(n, T, k, &a, &b);
            if (k != r)
                memcpy(x + a, g->buf[k] + a, (b - a) * sizeof(float));
        }
        return group_wait(g, what);
    }
    if (n > g->cap)
        return pt_fail(PT_EINTERNAL, "%s: %zu floats, more than the test's %zu", what, n, g->cap);
    for (size_t e = lo; e < hi; e++) {
        float acc = g->buf[0][e];
        for (int k = 1; k < T; k++)
            acc += g->buf[k][e];
        g->tmp[e] = acc;
    }
    PT_CHECK(group_wait(g, what)); /* every segment summed; nobody reads the inputs any more */
    if (op == 0) {
        memcpy(x, g->tmp, n * sizeof(float));
    } else {
        memcpy(x + lo, g->tmp + lo, (hi - lo) * sizeof(float));
        for (size_t e = 0; e < n; e++) /* undefined by contract: make reading them visible */
            if (e < lo || e >= hi)
                x[e] = NAN;
    }
    return group_wait(g, what);
}

static pt_status cb_allreduce(void *ctx, float *x, size_t n, const char *what)
{
    return collective(ctx, 0, x, n, what);
}
static pt_status cb_reduce_scatter(void *ctx, float *x, size_t n, const char *what)
{
    return collective(ctx, 1, x, n, what);
}
static pt_status cb_allgather(void *ctx, float *x, size_t n, const char *what)
{
    return collective(ctx, 2, x, n, what);
}

/* ---- one rank's run of a chunk ---- */

typedef struct variant {
    const char *name;
    int fused_only, recompute, split;
} variant;

static const variant VARIANTS[] = {
    { "fused", 0, 0, 0 },      { "again", 0, 0, 0 },      { "split", 0, 0, 1 },
    { "recompute", 0, 1, 0 }, { "fused_only", 1, 0, 0 }, { "fused_only+recompute", 1, 1, 0 },
};
enum { N_VARIANTS = sizeof(VARIANTS) / sizeof(VARIANTS[0]) };

/* A chunk's inputs: tokens and targets of each micro-batch, and for a chunk without the embedding
 * its input, without the head its output gradient (all N rows, (N, C); NULL when not used). */
typedef struct chunk_io {
    int32_t tok[MB][NTOK], tgt[MB][NTOK];
    float *in[MB], *dout[MB];
} chunk_io;

typedef struct run_out {
    pt_model *m;
    pt_stream *stream;
    size_t np;
    float *params, *grads; /* host copies of the flat buffers: initial weights, gradients after both micro-batches */
    int R;
    double loss[MB];
    int64_t ntok[MB];
    int32_t pred[MB][NTOK];
    float *out[MB], *din[MB]; /* (R, C): the chunk's output and input gradient, NULL when not applicable */
    int calls;
    int *cover; /* per gradient element: how often the grad hook reported it written */
    int hook_bad;
    pt_status st;
    char err[512];
} run_out;

typedef struct job {
    const pt_model_config *cfg;
    int first, last;
    const variant *v;
    int tp, rank, sp;
    rank_ctx *rc;
    const chunk_io *io;
    run_out *out;
    uint64_t seed;
} job;

static float *host_floats(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory (%zu floats)\n", n);
        exit(1);
    }
    return p;
}

/* The global element index of local element i of p (its slice of the whole tensor). */
static size_t global_index(const pt_param *p, size_t i)
{
    const size_t cols = p->ndim > 1 ? (size_t)p->shape[1] : 1, gcols = p->ndim > 1 ? (size_t)p->gshape[1] : 1;
    size_t r = i / cols, c = i % cols;
    if (p->tp_dim < 0)
        return i;
    size_t *along = p->tp_dim == 0 ? &r : &c;
    size_t cum = 0;
    for (int k = 0; k < p->tp_nseg; k++) {
        size_t len = (size_t)(p->tp_hi[k] - p->tp_lo[k]);
        if (*along < cum + len) {
            *along = (size_t)p->tp_lo[k] + (*along - cum);
            return r * gcols + c;
        }
        cum += len;
    }
    return SIZE_MAX;
}

/* A small deterministic change of every weight, a function of (tensor name, global element) only,
 * so that every T holds slices of the same whole tensors: makes the biases non-zero and the norm
 * weights other than 1, which the initialisation leaves them (a bias added on every rank instead
 * of one, or a norm weight applied twice, shows). */
static uint64_t name_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 0x100000001b3ull;
    return h;
}

static float perturbation(uint64_t name_h, size_t gi)
{
    uint64_t h = name_h ^ (uint64_t)gi * 0x9e3779b97f4a7c15ull;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    return 0.05f * ((float)(h >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
}

/* Reads the weights into host (pt_model_n_params floats), adds the perturbation, writes them back. */
static pt_status perturb(pt_model *m, pt_stream *s, float *host)
{
    PT_CHECK(be->memcpy_d2h(s, host, pt_model_params(m), pt_model_n_params(m) * sizeof(float)));
    PT_CHECK(be->stream_sync(s));
    for (int t = 0; t < pt_model_n_tensors(m); t++) {
        const pt_param *p = pt_model_tensor(m, t);
        const uint64_t h = name_hash(p->name);
        for (size_t i = 0; i < p->numel; i++) {
            size_t gi = p->tp_dim < 0 ? i : global_index(p, i);
            if (gi == SIZE_MAX)
                return pt_fail(PT_EINTERNAL, "%s: local element %zu lies in none of its slices", p->name, i);
            host[p->offset + i] += perturbation(h, gi);
        }
    }
    PT_CHECK(be->memcpy_h2d(s, pt_model_params(m), host, pt_model_n_params(m) * sizeof(float)));
    return be->stream_sync(s);
}

/* pt_model_set_grad_hook's report (what the overlapped gradient reduction reads): counted per element. */
static pt_status count_hook(void *ctx, int layer, size_t lo, size_t hi)
{
    run_out *o = ctx;
    (void)layer;
    if (!(lo < hi && hi <= o->np)) {
        o->hook_bad = 1;
        return PT_OK;
    }
    for (size_t i = lo; i < hi; i++)
        o->cover[i]++;
    return PT_OK;
}

static pt_status run_job_(job *j)
{
    run_out *o = j->out;
    const pt_model_config *cfg = j->cfg;
    PT_CHECK(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &o->stream));
    pt_model_opts mo = { .micro_batch = BATCH, .seq_len = SEQ, .n_slots = MB, .recompute = j->v->recompute,
                         .fused_only = j->v->fused_only };
    if (j->tp > 1) {
        j->rc->stream = o->stream;
        mo.tp = (struct pt_model_tp){ .size = j->tp, .rank = j->rank, .sp = j->sp, .allreduce = cb_allreduce,
                                      .reduce_scatter = cb_reduce_scatter, .allgather = cb_allgather, .ctx = j->rc };
    }
    PT_CHECK(pt_model_create(cfg, j->first, j->last, &mo, be, o->stream, &o->m));
    pt_model *m = o->m;
    PT_CHECK(pt_model_init_weights(m, j->seed));
    PT_CHECK(pt_model_zero_grads(m));
    const size_t C = (size_t)cfg->n_embd;
    const int R = pt_model_boundary_rows(m);
    const size_t row0 = j->sp && j->tp > 1 ? (size_t)j->rank * R : 0;
    o->R = R;
    o->np = pt_model_n_params(m);
    o->params = host_floats(o->np);
    PT_CHECK(perturb(m, o->stream, o->params));
    const int emb = pt_model_has_embedding(m), head = pt_model_has_head(m);
    for (int s = 0; s < MB; s++) {
        if (emb)
            PT_CHECK(be->memcpy_h2d(o->stream, pt_model_slot_tokens(m, s), j->io->tok[s], sizeof j->io->tok[s]));
        if (pt_model_has_head_layers(m))
            PT_CHECK(be->memcpy_h2d(o->stream, pt_model_slot_targets(m, s), j->io->tgt[s], sizeof j->io->tgt[s]));
        if (!emb)
            PT_CHECK(be->memcpy_h2d(o->stream, pt_model_slot_input(m, s), j->io->in[s] + row0 * C,
                                    (size_t)R * C * sizeof(float)));
        PT_CHECK(pt_model_forward(m, s));
        if (!head) {
            o->out[s] = host_floats((size_t)R * C);
            PT_CHECK(be->memcpy_d2h(o->stream, o->out[s], pt_model_slot_output(m, s), (size_t)R * C * sizeof(float)));
        } else {
            PT_CHECK(pt_model_slot_loss(m, s, &o->loss[s], &o->ntok[s]));
            PT_CHECK(pt_model_slot_predict(m, s, o->pred[s]));
        }
    }
    const float scale = 1.0f / (MB * NTOK);
    o->cover = calloc(o->np ? o->np : 1, sizeof(int));
    if (!o->cover)
        return pt_fail(PT_ENOMEM, "out of memory");
    pt_model_set_grad_hook(m, count_hook, o);
    for (int s = MB - 1; s >= 0; s--) { /* the later micro-batch first, as a pipeline's 1F1B does */
        if (!head) /* after reading the output: with fused_only the gradient takes its buffer */
            PT_CHECK(be->memcpy_h2d(o->stream, pt_model_slot_doutput(m, s), j->io->dout[s] + row0 * C,
                                    (size_t)R * C * sizeof(float)));
        if (j->v->split)
            PT_CHECK(pt_model_backward_input(m, s, scale));
        else
            PT_CHECK(pt_model_backward(m, s, scale));
    }
    if (j->v->split)
        for (int s = MB - 1; s >= 0; s--)
            PT_CHECK(pt_model_backward_weight(m, s));
    for (int s = 0; s < MB && !emb; s++) {
        o->din[s] = host_floats((size_t)R * C);
        PT_CHECK(be->memcpy_d2h(o->stream, o->din[s], pt_model_slot_dinput(m, s), (size_t)R * C * sizeof(float)));
    }
    PT_CHECK(pt_model_reduce_tied_grads(m));
    o->grads = host_floats(o->np);
    PT_CHECK(be->memcpy_d2h(o->stream, o->grads, pt_model_grads(m), o->np * sizeof(float)));
    return be->stream_sync(o->stream);
}

static void *run_job(void *arg)
{
    job *j = arg;
    j->out->st = run_job_(j);
    if (j->out->st != PT_OK) {
        snprintf(j->out->err, sizeof j->out->err, "%s", pt_last_error());
        if (j->rc)
            group_abort(j->rc->g);
    }
    if (j->rc)
        j->out->calls = j->rc->calls;
    return NULL;
}

static void run_out_free(run_out *o)
{
    pt_model_destroy(o->m);
    if (o->stream)
        be->stream_destroy(o->stream);
    free(o->params);
    free(o->grads);
    free(o->cover);
    for (int s = 0; s < MB; s++) {
        free(o->out[s]);
        free(o->din[s]);
    }
    memset(o, 0, sizeof *o);
}

/* Runs the chunk on T ranks (T threads); outs[0..T-1]. 0 when every rank succeeded. */
static int run_tp(const pt_model_config *cfg, int first, int last, const variant *v, int T, int sp,
                  const chunk_io *io, uint64_t seed, run_out *outs)
{
    group g = { .size = T };
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    g.cap = (size_t)NTOK * cfg->n_embd;
    if (g.cap < (size_t)MAXT * NTOK * PT_XENT_STATS)
        g.cap = (size_t)MAXT * NTOK * PT_XENT_STATS;
    g.tmp = host_floats(g.cap);
    rank_ctx rc[MAXT];
    job jobs[MAXT];
    pthread_t th[MAXT];
    for (int r = 0; r < T; r++) {
        memset(&outs[r], 0, sizeof outs[r]);
        rc[r] = (rank_ctx){ .g = &g, .rank = r };
        jobs[r] = (job){ .cfg = cfg, .first = first, .last = last, .v = v, .tp = T, .rank = r, .sp = sp,
                         .rc = &rc[r], .io = io, .out = &outs[r], .seed = seed };
        if (pthread_create(&th[r], NULL, run_job, &jobs[r]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    }
    int bad = 0;
    for (int r = 0; r < T; r++) {
        pthread_join(th[r], NULL);
        if (outs[r].st != PT_OK) {
            fprintf(stderr, "%s T=%d sp=%d layers %d..%d %s: rank %d failed: %s\n", cfg->name, T, sp, first, last,
                    v->name, r, outs[r].err);
            bad = 1;
        }
    }
    free(g.tmp);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
    return bad;
}

/* ---- the T = 1 pipeline around a chunk: its input and output gradient ---- */

#define MUST(expr)                                                                                                   \
    do {                                                                                                             \
        if ((expr) != PT_OK) {                                                                                       \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, pt_last_error());                  \
            exit(1);                                                                                                 \
        }                                                                                                            \
    } while (0)

static pt_model *make1(const pt_model_config *cfg, int first, int last, pt_stream *s, uint64_t seed)
{
    pt_model_opts mo = { .micro_batch = BATCH, .seq_len = SEQ, .n_slots = MB };
    pt_model *m = NULL;
    if (pt_model_create(cfg, first, last, &mo, be, s, &m) != PT_OK || pt_model_init_weights(m, seed) != PT_OK ||
        pt_model_zero_grads(m) != PT_OK) {
        fprintf(stderr, "T=1 model %s layers %d..%d: %s\n", cfg->name, first, last, pt_last_error());
        exit(1);
    }
    float *host = host_floats(pt_model_n_params(m));
    MUST(perturb(m, s, host));
    free(host);
    return m;
}

/* Fills io->in (layers before `first`) and io->dout (layers after `last`, run on the T = 1 chunk's
 * output); mid_out[s] gets that T = 1 output (N, C) when the chunk has no head. */
static void run_pipeline(const pt_model_config *cfg, int first, int last, uint64_t seed, chunk_io *io,
                         float **mid_out)
{
    const size_t C = (size_t)cfg->n_embd, bytes = NTOK * C * sizeof(float);
    const int nl = pt_model_n_layers(cfg);
    pt_stream *s;
    MUST(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &s));
    for (int k = 0; k < MB; k++)
        io->in[k] = io->dout[k] = mid_out[k] = NULL;
    if (first > 0) {
        pt_model *pre = make1(cfg, 0, first - 1, s, seed);
        for (int k = 0; k < MB; k++) {
            MUST(be->memcpy_h2d(s, pt_model_slot_tokens(pre, k), io->tok[k], sizeof io->tok[k]));
            MUST(pt_model_forward(pre, k));
            io->in[k] = host_floats(NTOK * C);
            MUST(be->memcpy_d2h(s, io->in[k], pt_model_slot_output(pre, k), bytes));
        }
        pt_model_destroy(pre);
    }
    if (last < nl - 1) {
        pt_model *mid = make1(cfg, first, last, s, seed), *post = make1(cfg, last + 1, nl - 1, s, seed);
        for (int k = 0; k < MB; k++) {
            if (first == 0)
                MUST(be->memcpy_h2d(s, pt_model_slot_tokens(mid, k), io->tok[k], sizeof io->tok[k]));
            else
                MUST(be->memcpy_h2d(s, pt_model_slot_input(mid, k), io->in[k], bytes));
            MUST(pt_model_forward(mid, k));
            mid_out[k] = host_floats(NTOK * C);
            MUST(be->memcpy_d2h(s, mid_out[k], pt_model_slot_output(mid, k), bytes));
            MUST(be->memcpy_h2d(s, pt_model_slot_input(post, k), mid_out[k], bytes));
            MUST(be->memcpy_h2d(s, pt_model_slot_targets(post, k), io->tgt[k], sizeof io->tgt[k]));
            MUST(pt_model_forward(post, k));
            MUST(pt_model_backward(post, k, 1.0f / (MB * NTOK)));
            io->dout[k] = host_floats(NTOK * C);
            MUST(be->memcpy_d2h(s, io->dout[k], pt_model_slot_dinput(post, k), bytes));
        }
        pt_model_destroy(post);
        pt_model_destroy(mid);
    }
    MUST(be->stream_sync(s));
    be->stream_destroy(s);
}

/* ---- comparisons ---- */

static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

/* max |a - ref| / max |ref| over n (the denominator 1 when ref is all zero). */
static double rel_err(const float *a, const float *ref, size_t n, size_t *worst)
{
    double dmax = 0.0, rmax = 0.0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (!(d <= dmax)) { /* NaN counts as the worst */
            dmax = isnan(d) ? INFINITY : d;
            *worst = i;
        }
        if (fabs((double)ref[i]) > rmax)
            rmax = fabs((double)ref[i]);
    }
    return dmax / (rmax > 0.0 ? rmax : 1.0);
}

typedef struct errs {
    double loss, out, din, grad;
    char grad_name[96];
} errs;

static void note_err(double *slot, double e) { *slot = e > *slot ? e : *slot; }

/* The T ranks' run (outs) against the T = 1 run (ref) of the same chunk. */
static void compare_to_ref(const char *tag, const run_out *ref, const run_out *outs, int T, int sp, errs *e)
{
    const pt_model_config *cfg = pt_model_config_of(ref->m);
    const size_t C = (size_t)cfg->n_embd;
    const int head = pt_model_has_head(ref->m), emb = pt_model_has_embedding(ref->m);
    for (int r = 0; r < T; r++) {
        const run_out *o = &outs[r];
        EXPECT(pt_model_tp_size(o->m) == T && pt_model_tp_rank(o->m) == r);
        EXPECT(o->R == (sp ? NTOK / T : NTOK));
        EXPECT(pt_model_vocab_rows(o->m) == cfg->vocab_padded / T);
        EXPECT(o->calls > 0);
        EXPECT(pt_model_n_tensors(o->m) == pt_model_n_tensors(ref->m));
        size_t un = 0; /* each backward pass reports every gradient element once */
        for (size_t i = 0; i < o->np; i++)
            un += o->cover[i] != MB;
        if (o->hook_bad || un) {
            fprintf(stderr, "%s rank %d: the grad hook reported %zu of %zu elements other than once per pass%s\n", tag,
                    r, un, o->np, o->hook_bad ? ", and a range outside the buffer" : "");
            failures++;
        }
        const size_t row0 = sp ? (size_t)r * o->R : 0, rc = (size_t)o->R * C;
        for (int s = 0; s < MB; s++) {
            size_t w;
            if (head) {
                double le = fabs(o->loss[s] - ref->loss[s]) / fabs(ref->loss[s]);
                note_err(&e->loss, le);
                if (!(le <= TOL) || o->ntok[s] != ref->ntok[s]) {
                    fprintf(stderr, "%s rank %d slot %d: loss %.9g over %lld tokens, T=1 %.9g over %lld\n", tag, r, s,
                            o->loss[s], (long long)o->ntok[s], ref->loss[s], (long long)ref->ntok[s]);
                    failures++;
                }
                EXPECT(same_bits(&o->loss[s], &outs[0].loss[s], sizeof(double))); /* one loss on every rank */
                for (int i = 0; i < NTOK; i++)
                    if (o->pred[s][i] != ref->pred[s][i]) {
                        fprintf(stderr, "%s rank %d slot %d token %d: argmax %d, T=1 %d\n", tag, r, s, i,
                                o->pred[s][i], ref->pred[s][i]);
                        failures++;
                        break;
                    }
            } else {
                double oe = rel_err(o->out[s], ref->out[s] + row0 * C, rc, &w);
                note_err(&e->out, oe);
                if (!(oe <= TOL)) {
                    fprintf(stderr, "%s rank %d slot %d: output rel err %.3g (element %zu: %.9g vs %.9g)\n", tag, r, s,
                            oe, w, o->out[s][w], ref->out[s][row0 * C + w]);
                    failures++;
                }
                if (!sp) /* all-reduced: the same bits on every rank */
                    EXPECT(same_bits(o->out[s], outs[0].out[s], rc * sizeof(float)));
            }
            if (!emb) {
                double de = rel_err(o->din[s], ref->din[s] + row0 * C, rc, &w);
                note_err(&e->din, de);
                if (!(de <= TOL)) {
                    fprintf(stderr, "%s rank %d slot %d: input gradient rel err %.3g (element %zu: %.9g vs %.9g)\n",
                            tag, r, s, de, w, o->din[s][w], ref->din[s][row0 * C + w]);
                    failures++;
                }
                if (!sp)
                    EXPECT(same_bits(o->din[s], outs[0].din[s], rc * sizeof(float)));
            }
        }
    }
    /* parameters: slices of the same whole tensors; gradients reassembled */
    for (int t = 0; t < pt_model_n_tensors(ref->m); t++) {
        const pt_param *pr = pt_model_tensor(ref->m, t);
        const size_t n = pr->numel;
        float *sum = host_floats(n);
        int *cnt = calloc(n, sizeof(int)), *want = calloc(n, sizeof(int));
        if (!cnt || !want) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        int meta_bad = 0, weight_bad = 0, replica_bad = 0;
        for (int r = 0; r < T; r++) {
            const pt_param *p = pt_model_find_tensor(outs[r].m, pr->name);
            if (!p) {
                fprintf(stderr, "%s rank %d: no tensor %s\n", tag, r, pr->name);
                failures++;
                continue;
            }
            if (p->ndim != pr->ndim || p->gshape[0] != pr->shape[0] || (pr->ndim > 1 && p->gshape[1] != pr->shape[1]) ||
                p->tp_dim < -1 || p->tp_dim >= p->ndim || (p->tp_dim >= 0) != (p->tp_nseg > 0) ||
                pr->tp_dim != -1 || pr->rep_n != 1 || p->rep_n < 1 ||
                (p->rep_n > 1 && (p->rep_lo >= p->rep_hi || p->rep_hi > p->numel || p->rep_first > r ||
                                  r >= p->rep_first + p->rep_n))) {
                fprintf(stderr, "%s rank %d: %s's slice metadata is inconsistent (ndim %d gshape %dx%d tp_dim %d "
                                "nseg %d rep [%zu,%zu) n %d first %d)\n",
                        tag, r, pr->name, p->ndim, p->gshape[0], p->gshape[1], p->tp_dim, p->tp_nseg, p->rep_lo,
                        p->rep_hi, p->rep_n, p->rep_first);
                meta_bad = 1;
                continue;
            }
            const float *w = outs[r].params + p->offset, *g = outs[r].grads + p->offset;
            for (size_t i = 0; i < p->numel; i++) {
                size_t gi = global_index(p, i);
                if (gi >= n) {
                    meta_bad = 1;
                    break;
                }
                const int in_rep = p->rep_n > 1 && i >= p->rep_lo && i < p->rep_hi;
                if (!same_bits(&w[i], &ref->params[pr->offset + gi], sizeof(float)))
                    weight_bad++;
                if (cnt[gi] == 0) {
                    sum[gi] = g[i];
                    want[gi] = in_rep ? p->rep_n : 1;
                } else if (!in_rep || want[gi] != p->rep_n) {
                    meta_bad = 1;
                } else if (p->rep_partial) {
                    sum[gi] += g[i];
                } else if (!same_bits(&sum[gi], &g[i], sizeof(float))) {
                    replica_bad++;
                }
                cnt[gi]++;
            }
        }
        for (size_t i = 0; i < n && !meta_bad; i++)
            if (cnt[i] != want[i] || cnt[i] == 0)
                meta_bad = 1;
        if (meta_bad || weight_bad || replica_bad) {
            fprintf(stderr, "%s: %s: %s%s%d weight elements differ from T=1's, %d replicated gradient elements differ "
                            "between holders\n",
                    tag, pr->name,
                    meta_bad ? "the slices do not cover the tensor exactly (rep_n times inside rep ranges)" : "",
                    meta_bad ? "; " : "", weight_bad, replica_bad);
            failures++;
        }
        size_t w;
        double ge = rel_err(sum, ref->grads + pr->offset, n, &w);
        if (ge > e->grad) {
            e->grad = ge;
            snprintf(e->grad_name, sizeof e->grad_name, "%s", pr->name);
        }
        if (!(ge <= TOL)) {
            fprintf(stderr, "%s: gradient of %s rel err %.3g (element %zu: %.9g vs T=1 %.9g)\n", tag, pr->name, ge, w,
                    sum[w], ref->grads[pr->offset + w]);
            failures++;
        }
        free(sum);
        free(cnt);
        free(want);
    }
}

/* Another variant's run of the same T against the first: the same bits everywhere. */
static void compare_bits(const char *tag, const run_out *a, const run_out *b, int T)
{
    for (int r = 0; r < T; r++) {
        const run_out *x = &a[r], *y = &b[r];
        if (x->np != y->np || x->R != y->R) {
            fprintf(stderr, "%s rank %d: a different model from the first run's\n", tag, r);
            failures++;
            continue;
        }
        const size_t rc = (size_t)x->R * pt_model_config_of(x->m)->n_embd;
        char what[256] = "";
        if (!same_bits(x->params, y->params, x->np * sizeof(float)))
            strcat(what, " weights");
        if (!same_bits(x->grads, y->grads, x->np * sizeof(float))) {
            size_t i = 0;
            while (same_bits(&x->grads[i], &y->grads[i], sizeof(float)))
                i++;
            for (int t = 0; t < pt_model_n_tensors(x->m); t++) {
                const pt_param *p = pt_model_tensor(x->m, t);
                if (i >= p->offset && i < p->offset + p->numel)
                    snprintf(what + strlen(what), sizeof what - strlen(what), " gradient of %s (%.9g vs %.9g)",
                             p->name, x->grads[i], y->grads[i]);
            }
        }
        for (int s = 0; s < MB; s++) {
            if (!same_bits(&x->loss[s], &y->loss[s], sizeof(double)) || x->ntok[s] != y->ntok[s])
                strcat(what, " loss");
            if (!same_bits(x->pred[s], y->pred[s], sizeof x->pred[s]))
                strcat(what, " predictions");
            if (x->out[s] && y->out[s] && !same_bits(x->out[s], y->out[s], rc * sizeof(float)))
                strcat(what, " output");
            if (x->din[s] && y->din[s] && !same_bits(x->din[s], y->din[s], rc * sizeof(float)))
                strcat(what, " input-gradient");
            if (strlen(what) > 150)
                break;
        }
        if (what[0]) {
            fprintf(stderr, "%s rank %d: not the first run's bits:%s\n", tag, r, what);
            failures++;
        }
    }
}

/* ---- the cases ---- */

static uint64_t rng_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void test_config(const pt_model_config *cfg, uint64_t seed)
{
    const int L = cfg->n_layer, nl = pt_model_n_layers(cfg);
    chunk_io io;
    uint64_t x = seed * 7919 + 1;
    for (int s = 0; s < MB; s++)
        for (int i = 0; i < NTOK; i++) {
            io.tok[s][i] = (int32_t)(rng_next(&x) % (uint64_t)cfg->vocab_size);
            io.tgt[s][i] = i % 7 == 3 ? -1 : (int32_t)(rng_next(&x) % (uint64_t)cfg->vocab_size); /* some ignored */
        }
    const struct {
        const char *name;
        int first, last;
    } chunks[] = {
        { "whole", 0, nl - 1 }, { "blocks", 2, L - 1 }, { "head", L + 1, nl - 1 }, { "embedding+blocks", 0, 2 },
    };
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        const int first = chunks[c].first, last = chunks[c].last;
        float *mid_out[MB];
        run_pipeline(cfg, first, last, seed, &io, mid_out);
        run_out ref = { 0 };
        job j1 = { .cfg = cfg, .first = first, .last = last, .v = &VARIANTS[0], .tp = 1, .io = &io, .out = &ref,
                   .seed = seed };
        run_job(&j1);
        if (ref.st != PT_OK) {
            fprintf(stderr, "%s %s T=1: %s\n", cfg->name, chunks[c].name, ref.err);
            exit(1);
        }
        for (int s = 0; s < MB; s++) /* the chunk alone repeats the pipeline's forward */
            if (mid_out[s])
                EXPECT(same_bits(mid_out[s], ref.out[s], NTOK * (size_t)cfg->n_embd * sizeof(float)));
        for (int T = 2; T <= 4; T *= 2)
            for (int sp = 0; sp <= 1; sp++) {
                char tag[160];
                snprintf(tag, sizeof tag, "%s %s (layers %d..%d) T=%d sp=%d", cfg->name, chunks[c].name, first, last, T,
                         sp);
                run_out base[MAXT], other[MAXT];
                if (run_tp(cfg, first, last, &VARIANTS[0], T, sp, &io, seed, base)) {
                    failures++;
                    for (int r = 0; r < T; r++)
                        run_out_free(&base[r]);
                    continue;
                }
                errs e = { 0 };
                compare_to_ref(tag, &ref, base, T, sp, &e);
                for (int v = 1; v < N_VARIANTS; v++) {
                    char vtag[200];
                    snprintf(vtag, sizeof vtag, "%s %s", tag, VARIANTS[v].name);
                    if (run_tp(cfg, first, last, &VARIANTS[v], T, sp, &io, seed, other))
                        failures++;
                    else
                        compare_bits(vtag, base, other, T);
                    for (int r = 0; r < T; r++)
                        run_out_free(&other[r]);
                }
                char l[16] = "-", ou[16] = "-", di[16] = "-";
                if (pt_model_has_head(ref.m))
                    snprintf(l, sizeof l, "%.2e", e.loss);
                else
                    snprintf(ou, sizeof ou, "%.2e", e.out);
                if (!pt_model_has_embedding(ref.m))
                    snprintf(di, sizeof di, "%.2e", e.din);
                printf("%-58s max rel err: loss %s, output %s, input grad %s, param grad %.2e (%s); %d collectives "
                       "per rank\n",
                       tag, l, ou, di, e.grad, e.grad_name, base[0].calls);
                for (int r = 0; r < T; r++)
                    run_out_free(&base[r]);
            }
        run_out_free(&ref);
        for (int s = 0; s < MB; s++) {
            free(io.in[s]);
            free(io.dout[s]);
            free(mid_out[s]);
        }
    }
}

static int has(const char *needle) { return strstr(pt_last_error(), needle) != NULL; }

static pt_status no_collective(void *ctx, float *x, size_t n, const char *what)
{
    (void)ctx, (void)x, (void)n;
    return pt_fail(PT_EINTERNAL, "%s: not expected in this test", what);
}

static void test_refusals(void)
{
    pt_model_config g, l;
    MUST(pt_model_config_load("gpt2-tiny", &g));
    MUST(pt_model_config_load("llama-tiny", &l));
    EXPECT(pt_model_tp_check(&g, 1, 1, 1, 3) == PT_OK); /* T = 1: nothing to split */
    EXPECT(pt_model_tp_check(&g, 2, 1, BATCH, SEQ) == PT_OK && pt_model_tp_check(&g, 4, 0, 1, 3) == PT_OK);
    EXPECT(pt_model_tp_check(&l, 4, 1, BATCH, SEQ) == PT_OK);
    EXPECT(pt_model_tp_check(&g, 0, 0, 1, 1) == PT_EINVAL && has("between 1 and 256"));
    EXPECT(pt_model_tp_check(&g, 257, 0, 1, 1) == PT_EINVAL && has("between 1 and 256"));
    EXPECT(pt_model_tp_check(&g, 3, 0, 1, 1) == PT_EINVAL && has("4 attention heads"));
    EXPECT(pt_model_tp_check(&g, 8, 0, 1, 1) == PT_EINVAL && has("--tp 8") && has("attention heads"));
    /* B*T = 6 does not split into 4 with sp; without sp it need not */
    EXPECT(pt_model_tp_check(&g, 4, 1, 1, 6) == PT_EINVAL && has("--sp") && has("6 tokens"));
    EXPECT(pt_model_tp_check(&g, 4, 1, 2, 6) == PT_OK);
    pt_model_config hs = g;
    MUST(pt_model_config_set_head_split(&hs, 2));
    EXPECT(pt_model_tp_check(&hs, 2, 0, 1, 1) == PT_EINVAL && has("head_split 2"));
    EXPECT(pt_model_tp_check(&hs, 1, 0, 1, 1) == PT_OK);
    pt_model_config v = g; /* a padded vocabulary not dividing by T */
    v.vocab_size = v.vocab_padded = 250;
    MUST(pt_model_config_validate(&v));
    EXPECT(pt_model_tp_check(&v, 4, 0, 1, 1) == PT_EINVAL && has("padded vocabulary 250"));
    EXPECT(pt_model_tp_check(&v, 2, 0, 1, 1) == PT_OK);
    pt_model_config k = l; /* 6 heads on 2 kv heads: T = 3 neither divides nor is a multiple of 2 */
    k.n_head = 6;
    k.n_embd = 192;
    MUST(pt_model_config_validate(&k));
    EXPECT(pt_model_tp_check(&k, 3, 0, 1, 1) == PT_EINVAL && has("2 key/value heads"));
    EXPECT(pt_model_tp_check(&k, 6, 0, 1, 1) == PT_EINVAL && has("MLP width 352"));
    k.intermediate_size = 360;
    EXPECT(pt_model_tp_check(&k, 6, 0, 1, 1) == PT_EINVAL && has("padded vocabulary 256"));
    k.vocab_padded = 258;
    EXPECT(pt_model_tp_check(&k, 6, 0, 1, 1) == PT_OK);

    /* pt_model_create: the same checks, a rank outside the group, missing collectives */
    pt_stream *s;
    MUST(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &s));
    pt_model *m = (pt_model *)1;
    pt_model_opts o = { .micro_batch = 1, .seq_len = 6, .n_slots = 1 };
    o.tp = (struct pt_model_tp){ .size = 4, .rank = 0, .sp = 1, .allreduce = no_collective,
                                 .reduce_scatter = no_collective, .allgather = no_collective };
    EXPECT(pt_model_create(&g, 0, 1, &o, be, s, &m) == PT_EINVAL && m == NULL && has("--sp"));
    o.tp.size = 3;
    o.tp.sp = 0;
    EXPECT(pt_model_create(&g, 0, 1, &o, be, s, &m) == PT_EINVAL && m == NULL && has("attention heads"));
    o.tp.size = 2;
    o.tp.rank = 2;
    EXPECT(pt_model_create(&g, 0, 1, &o, be, s, &m) == PT_EINVAL && m == NULL && has("rank 2 of a group of 2"));
    o.tp.rank = 1;
    o.tp.allgather = NULL;
    EXPECT(pt_model_create(&g, 0, 1, &o, be, s, &m) == PT_EINVAL && m == NULL && has("collectives"));
    o.tp.allgather = no_collective;
    EXPECT(pt_model_create(&hs, 0, 1, &o, be, s, &m) == PT_EINVAL && m == NULL && has("head_split"));
    /* size 1: no tensor parallelism, the callbacks unused */
    o.tp = (struct pt_model_tp){ .size = 1, .rank = 0 };
    EXPECT(pt_model_create(&g, 0, 1, &o, be, s, &m) == PT_OK && pt_model_tp_size(m) == 1 &&
           pt_model_boundary_rows(m) == 6 && pt_model_vocab_rows(m) == g.vocab_padded);
    if (m) {
        const pt_param *w = pt_model_find_tensor(m, "wte.weight");
        EXPECT(w && w->tp_dim == -1 && w->tp_nseg == 0 && w->rep_n == 1 && w->gshape[0] == w->shape[0]);
    }
    pt_model_destroy(m);
    be->stream_destroy(s);
}

int main(void)
{
    if (pt_backend_get("cpu", &be) != PT_OK) {
        fprintf(stderr, "cpu backend: %s\n", pt_last_error());
        return 1;
    }
    test_refusals();
    pt_model_config gpt2, llama, llama_other;
    MUST(pt_model_config_load("gpt2-tiny", &gpt2));
    MUST(pt_model_config_load("llama-tiny", &llama));
    llama_other = llama; /* the preset's tying flipped: the head's lm_head.weight, or the tied wte */
    /* the preset's tying flipped (the head's own lm_head.weight, or the tied wte), 3 blocks, 8 heads
     * on 4 kv heads (T = 2: two kv heads and four query heads per rank), and a vocabulary padded past
     * its last token (250 of 256 rows: rank 3 of 4 holds the padding) */
    llama_other.tie_word_embeddings = !llama.tie_word_embeddings;
    llama_other.n_layer = 3;
    llama_other.n_head = 8;
    llama_other.n_kv_head = 4;
    llama_other.vocab_size = 250;
    snprintf(llama_other.name, sizeof llama_other.name, "llama-tiny-%s-3l-8h4kv-v250",
             llama_other.tie_word_embeddings ? "tied" : "untied");
    MUST(pt_model_config_validate(&llama_other));
    test_config(&gpt2, 11);
    test_config(&llama, 12);
    test_config(&llama_other, 13);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
