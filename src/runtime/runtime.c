/* The pipeline runtime: this rank's chunks, their activation slots, and one step as one pass over
 * the rank's action list (see include/pipetrain/runtime.h and docs/pipeline.md).
 *
 * Slots. Each local chunk has n_slots activation slots (the most (micro-batch, chunk) pairs the
 * list keeps alive at once, found by a dry run of the same rules at create). A pair takes a slot
 * at its first touch (its RECV_ACT, or its FORWARD when the input is local) and gives it back when
 *   - its backward is done (B, or W after I),
 *   - its input gradient has left (SEND_GRAD issued, or copied into the previous chunk on this
 *     rank).
 * Sends copy their data into a staging buffer first, so a slot never waits for the network.
 * Receives are posted ahead in list order as soon as their pair holds a slot; slots are handed
 * out in list order only, so a later action never takes a slot an earlier one needs.
 *
 * Transfers. Everything that travels between ranks (activations, their gradients, the tied and
 * data-parallel gradient all-reduces) goes through one pt_link (pipetrain/link.h), made at create
 * when the job has several ranks. comm/ chose its kind (host memory, host-staged, NCCL) from the
 * ranks' identities; the runtime asks the link only two questions, both about ordering: whether
 * receives must be posted in list order (pt_link_ordered_recvs), and, through pt_link_send_fence,
 * whether a send may still read a chunk's slots when the compute stream comes back to it.
 */
#include "pipetrain/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pipetrain/grad_sync.h"
#include "pipetrain/link.h"
#include "pipetrain/timeutil.h"

typedef struct rt_chunk {
    int vstage;
    int first_layer, last_layer;
    int has_emb, has_head;
    int has_hl;                 /* holds LM-head layers (all of them, or shards: head_split) */
    int prev_local, next_local; /* local chunk index of vstage -1 / +1 on this rank, else -1 */
    int prev_rank, next_rank;   /* pipeline rank owning vstage -1 / +1, else -1 */
    pt_model *m;
    pt_optim *o;
    int n_slots;
    int *slot_mb;               /* [n_slots] micro-batch holding the slot, -1 free */
    int *mb_slot;               /* [M] slot of the micro-batch, -1 none */
    unsigned char *bwd_done;    /* [M] */
    unsigned char *dgrad_pend;  /* [M] input gradient still to leave (chunks without the embedding) */
    int in_use, peak_in_use;
    int global_tensor0;         /* index of this chunk's first counted tensor in the global order */
    int n_counted;              /* tensors counted in the global norm (head-only wte skipped) */
    int skip_tensor;            /* index of the skipped tied copy, or -1 */
} rt_chunk;

/* A send in flight on the link. */
typedef struct rt_send {
    int chunk, mb, action;
    int buf;                    /* the link's staging buffer */
    size_t bytes;               /* the message's size */
} rt_send;

struct pt_runtime {
    const pt_model_config *cfg;
    const pt_plan *plan;
    const pt_schedule *sched;
    pt_comm *comm;
    const pt_backend *be;
    pt_stream *stream;
    pt_adamw_cfg adamw;
    pt_profile *prof;
    /* Profiled steps on a backend with timeline markers: the compute actions are timed on the
     * stream's own clock instead of syncing the stream after each. mk[0] is the step's anchor
     * (recorded on an idle stream, at host time mk_anchor_ns), mk[1 + 2i] and mk[2 + 2i] bracket
     * action i; its event waits in pend[i] until the step's end converts it (every action
     * prof_on_stream names, once the step has run them all). */
    pt_marker **mk;
    int n_mk;
    int64_t mk_anchor_ns;
    pt_prof_event *pend;
    int n_pend;
    int64_t timeout_ms;
    size_t mem_limit_bytes;
    pt_precision precision;     /* pt_runtime_opts.precision */
    int no_stash;               /* pt_runtime_opts.no_stash */
    int rank, world, P, V, D, M, B, T, C;
    int p, d;                   /* pipeline rank, replica */
    int ntp, tpr, sp;           /* tensor parallelism: group size (1: none), this rank's index, sequence parallel */
    int rows;                   /* token rows of a stage-to-stage message: B*T, or B*T / ntp with sp */
    pt_comm_group *tp_group;    /* the ntp ranks of this (replica, pipeline rank), when ntp > 1 */
    pt_comm_group *kv_group;    /* the ranks sharing this rank's kv head (llama, n_kv_head < ntp) */
    int kv_n;                   /* their number (0: no replicated kv heads) */
    int tp_gi, kv_gi;           /* their indices among the link's groups, -1 none */
    void *tp_pack[2];           /* backend buffers packing the partial gradients summed over the tp / kv group */
    size_t tp_pack_n[2];        /* their floats */
    int64_t tp_ns;              /* this step's time in tensor-parallel collectives */
    rt_chunk *ch;               /* [V] */
    int emb_chunk, head_chunk;  /* local chunk indices or -1 */
    pt_comm_group *tied_group;  /* this replica's ranks holding the embedding or head layers (when several) */
    int *tied_ranks;            /* [n_tied] their pipeline ranks, ascending */
    int n_tied;
    int n_hl;                   /* local chunks holding head layers (they need the targets and loss scale) */
    pt_comm_group *dp_group;    /* the D ranks of this pipeline rank (when D > 1) */
    int n_global_tensors;
    int zero;                   /* 1: ZeRO-1, this replica holds the moments of its segment of each chunk */
    int n_norm;                 /* n_global_tensors * D: one sum of squares per (tensor, replica segment) */
    double *norm_buf;           /* [n_norm + 2]: sums of squares, loss, tokens */
    double *sumsq;              /* [max local tensors] */
    int32_t *tokens, *targets;  /* host (M,B,T) for this step, when the rank needs them */
    /* per step */
    const pt_action *acts;
    int n_acts;
    unsigned char *recv_posted; /* [n_acts] 1: the action's receive is posted on the link */
    unsigned char *first_touch; /* [n_acts] 1: this action takes the pair's slot */
    rt_send *sends;
    int n_sends, cap_sends;
    /* Send staging: the schedule's sends are buffered (schedule.h), but a transport send completes
     * only once the receiver has posted its buffer, so a send straight from a slot would pin that
     * slot and two ranks waiting for each other's slots could deadlock. Sends copy into a staging
     * buffer of the link instead (indices handed out on demand up to the list's send count,
     * reused every step). */
    int n_stage;                /* buffer indices in use so far */
    int *stage_free;            /* stack of free indices */
    int n_stage_free;
    int dev_mem;                /* be->device_memory (what a one-rank run's transfer path says) */
    pt_link *link;              /* more than one rank: how data travels (owned) */
    int tied_gi, dp_gi;         /* this rank's tied and data-parallel groups among the link's, -1 none */
    int recv_in_order;          /* the link matches receives by posting order: post in list order */
    unsigned char *send_fence;  /* [V] a send begun since the last fence may still read this chunk's slots */
    int failed;                 /* a step failed: peers may be gone (the link aborts at destroy) */
    int64_t step;
    int64_t msg_step;           /* the step field of message ids: the step, or an eval round's tag */
    int cur;                    /* action being executed */
    /* held-out evaluation (pt_runtime_eval) */
    int32_t *ev_pred;           /* head rank: B*T greedy predictions */
    int64_t eval_seq;           /* eval rounds so far (message tags) */
    double loss_sum;
    int64_t loss_tokens;
    int64_t wait_ns;            /* communication wait of the current action */
    int64_t step_wait_ns;
    float clip_scale;
    double grad_norm;
    int reduced;
    int applied;                /* the optimizer ran (loss and norm finite) */
    float loss_scale;           /* 1 / targets of the global batch (head only) */
    int64_t n_targets;
    int32_t *scratch_tok, *scratch_tgt; /* (B,T) for counting other replicas' targets */
    size_t alloc_bytes, slot_bytes;
    /* --overlap (opts.overlap, D > 1): the data-parallel reduction in buckets during the backward */
    pt_grad_sync *gs;           /* the engine (its thread and communicator), NULL without overlap */
    struct rt_gs_hook *gs_hooks; /* [V] the models' gradient hooks' contexts */
    int *gs_last_wpass;         /* [V] index in the training list of the chunk's last weight pass (B or W) */
    size_t *gs_defer;           /* [V * 4] per chunk up to two ranges [lo, hi) the tied reduction still
                                   changes: marked ready at REDUCE_GRADS, after it */
    int gs_live;                /* chunk whose last weight pass of the step is running, -1 none */
    int gs_begun;               /* pt_grad_sync_begin ran for this step */
    int64_t step_exposed_ns;    /* this step's REDUCE_GRADS + OPTIMIZER_STEP communication waits */
};

/* What a chunk's gradient hook (pt_model_set_grad_hook) needs. */
typedef struct rt_gs_hook {
    pt_runtime *rt;
    int chunk;
} rt_gs_hook;

float pt_loss_scale_for(int64_t n_targets) { return n_targets > 0 ? 1.0f / (float)n_targets : 0.0f; }

static const char *kind_name(int k) { return pt_action_kind_name((pt_action_kind)k); }

/* ---- rank and position in errors ---- */

static pt_status rt_fail_at(pt_runtime *rt, pt_status code, const char *what)
{
    /* Keep the lower layer's sentence and say where this rank stood. */
    const pt_action *a = rt->cur >= 0 && rt->cur < rt->n_acts ? &rt->acts[rt->cur] : NULL;
    if (a)
        return pt_fail_wrap(code, "rank %d: %s %s mb %d chunk %d (step %lld, action %d of %d)", rt->rank, what,
                            kind_name(a->kind), a->microbatch, a->chunk, (long long)rt->step, rt->cur, rt->n_acts);
    return pt_fail_wrap(code, "rank %d: %s (step %lld)", rt->rank, what, (long long)rt->step);
}

/* World rank of (replica d, pipeline rank p, tensor-parallel rank t): ((d * P + p) * ntp + t). */
static int world_at(const pt_runtime *rt, int d, int p, int t) { return (d * rt->P + p) * rt->ntp + t; }
static int world_of(const pt_runtime *rt, int stage_rank) { return world_at(rt, rt->d, stage_rank, rt->tpr); }

/* Bytes of the stage-to-stage message crossing boundary b (the input of layer b): one
 * micro-batch's activations or gradients there, (B, T) times pt_model_boundary_width floats (with
 * sequence parallelism this rank's B*T / ntp rows of them, sent to the same tensor-parallel rank
 * of the next stage: no gather at the boundary). */
static size_t rt_bound_bytes(const pt_runtime *rt, int b)
{
    return (size_t)rt->rows * (size_t)pt_model_boundary_width(rt->cfg, b) * sizeof(float);
}

/* The largest message (staging and receive buffers hold any): B*T*C floats, and the head
 * shards' statistics when the head is split. */
static size_t rt_msg_bytes(const pt_runtime *rt)
{
    return rt_bound_bytes(rt, pt_model_n_layers(rt->cfg) - 1);
}

/* The message of action kind `kind` of chunk k: activations leave and gradients arrive at its
 * output boundary; activations arrive and gradients leave at its input boundary. */
static size_t rt_act_bytes(const pt_runtime *rt, const rt_chunk *k, int kind)
{
    int out = kind == PT_ACT_SEND_ACT || kind == PT_ACT_RECV_GRAD;
    return rt_bound_bytes(rt, out ? k->last_layer + 1 : k->first_layer);
}

static int64_t rt_deadline(const pt_runtime *rt) { return pt_deadline_after_ms(rt->timeout_ms); }

/* The status of a finished wait for a transfer of action a with pipeline rank peer: on failure
 * names the action, peer and position (a timeout as the runtime's own sentence). */
static pt_status rt_wait_status(pt_runtime *rt, pt_status st, const pt_action *a, int peer, int is_recv)
{
    if (st == PT_OK)
        return PT_OK;
    if (st == PT_ETIMEDOUT)
        return pt_fail(PT_ETIMEDOUT,
                       "rank %d: %s %s mb %d chunk %d %s rank %d after %.0f s (step %lld, action %d of %d); "
                       "check rank %d's log",
                       rt->rank, is_recv ? "no" : "nobody took", kind_name(a->kind), a->microbatch, a->chunk,
                       is_recv ? "from" : "at", world_of(rt, peer), (double)rt->timeout_ms / 1000.0,
                       (long long)rt->step, rt->cur, rt->n_acts, world_of(rt, peer));
    return pt_fail_wrap(st, "rank %d: %s mb %d chunk %d with rank %d failed (step %lld, action %d of %d)", rt->rank,
                        kind_name(a->kind), a->microbatch, a->chunk, world_of(rt, peer), (long long)rt->step,
                        rt->cur, rt->n_acts);
}

/* ---- slots ---- */

static void slot_try_release(pt_runtime *rt, int c, int mb)
{
    rt_chunk *k = &rt->ch[c];
    int s = k->mb_slot[mb];
    if (s < 0 || !k->bwd_done[mb] || k->dgrad_pend[mb])
        return;
    k->slot_mb[s] = -1;
    k->mb_slot[mb] = -1;
    k->in_use--;
}

/* Gives (c, mb) a free slot; returns 0 when none is free. */
static int slot_acquire(pt_runtime *rt, int c, int mb)
{
    rt_chunk *k = &rt->ch[c];
    if (k->mb_slot[mb] >= 0)
        return 1;
    for (int s = 0; s < k->n_slots; s++) {
        if (k->slot_mb[s] < 0) {
            k->slot_mb[s] = mb;
            k->mb_slot[mb] = s;
            k->bwd_done[mb] = 0;
            k->dgrad_pend[mb] = !k->has_emb;
            k->in_use++;
            if (k->in_use > k->peak_in_use)
                k->peak_in_use = k->in_use;
            return 1;
        }
    }
    return 0;
}

static void send_done(pt_runtime *rt, int i)
{
    rt_send sd = rt->sends[i];
    rt->sends[i] = rt->sends[--rt->n_sends];
    rt->stage_free[rt->n_stage_free++] = sd.buf;
}

/* "SEND_ACT mb 3 chunk 0 to rank 1 (step 4, action 7 of 20)": a send in the link's errors. */
static void send_what(const pt_runtime *rt, const rt_send *sd, char *buf, size_t cap)
{
    const pt_action *a = &rt->acts[sd->action];
    snprintf(buf, cap, "%s mb %d chunk %d to rank %d (step %lld, action %d of %d)", kind_name(a->kind),
             a->microbatch, a->chunk, world_of(rt, a->peer), (long long)rt->step, sd->action, rt->n_acts);
}

/* Posts the messages of sends the link still holds back (host-staged: their copies to the host),
 * waiting for that device work only, no peer involved. Called before this rank blocks on a peer,
 * so that a peer never waits for a message this rank has ready but not yet posted. */
static pt_status sends_flush(pt_runtime *rt)
{
    for (int i = 0; i < rt->n_sends; i++) {
        if (!pt_link_send_held(rt->link, rt->sends[i].buf))
            continue;
        char what[160];
        send_what(rt, &rt->sends[i], what, sizeof what);
        PT_CHECK(pt_link_send_post(rt->link, rt->sends[i].buf, rt_deadline(rt), what));
    }
    return PT_OK;
}

/* Completes whatever sends have finished, without blocking. */
static pt_status sends_progress(pt_runtime *rt)
{
    for (int i = 0; i < rt->n_sends;) {
        int done = 0;
        pt_status st = pt_link_send_test(rt->link, rt->sends[i].buf, &done);
        if (st == PT_OK && !done) {
            i++;
            continue;
        }
        const pt_action *a = &rt->acts[rt->sends[i].action];
        if (done)
            send_done(rt, i);
        if (st != PT_OK)
            return pt_fail_wrap(st, "rank %d: %s mb %d chunk %d to rank %d failed (step %lld, action %d of %d)",
                                rt->rank, kind_name(a->kind), a->microbatch, a->chunk, world_of(rt, a->peer),
                                (long long)rt->step, rt->cur, rt->n_acts);
    }
    return PT_OK;
}

/* Waits for send i to finish and frees its entry (the last entry moves to i). */
static pt_status send_wait(pt_runtime *rt, int i)
{
    rt_send *sd = &rt->sends[i];
    const pt_action *a = &rt->acts[sd->action];
    pt_status st = sends_flush(rt); /* this send's own message included */
    if (st == PT_OK) {
        char what[160];
        send_what(rt, sd, what, sizeof what);
        int64_t t0 = pt_now_ns();
        st = pt_link_send_wait(rt->link, sd->buf, rt_deadline(rt), what);
        rt->wait_ns += pt_now_ns() - t0;
        st = rt_wait_status(rt, st, a, a->peer, 0);
    }
    send_done(rt, i);
    return st;
}

/* Waits for every send still in flight (before the reductions, and at the end of a step). */
static pt_status sends_wait_all(pt_runtime *rt)
{
    while (rt->n_sends > 0)
        PT_CHECK(send_wait(rt, rt->n_sends - 1));
    return PT_OK;
}

/* A slot for (c, mb) at the action that needs it. Slots never wait for the network (sends are
 * staged), so the dry-run count always suffices. */
static pt_status slot_need(pt_runtime *rt, int c, int mb)
{
    if (slot_acquire(rt, c, mb))
        return PT_OK;
    return pt_fail(PT_EINTERNAL,
                   "rank %d: no free activation slot for mb %d chunk %d (%d slots, step %lld, action %d of %d); the "
                   "slot count disagrees with the action list, please report it",
                   rt->rank, mb, c, rt->ch[c].n_slots, (long long)rt->step, rt->cur, rt->n_acts);
}

/* "RECV_ACT mb 3 chunk 0 from rank 1 (step 4, action 7 of 20)": a receive in the link's errors. */
static void recv_what(const pt_runtime *rt, int i, char *buf, size_t cap)
{
    const pt_action *a = &rt->acts[i];
    snprintf(buf, cap, "%s mb %d chunk %d from rank %d (step %lld, action %d of %d)", kind_name(a->kind),
             a->microbatch, a->chunk, world_of(rt, a->peer), (long long)rt->step, i, rt->n_acts);
}

/* Posts receives ahead: slots in list order, receives for pairs holding a slot. */
static pt_status recv_post_ahead(pt_runtime *rt, int from)
{
    int blocked = 0;
    for (int i = from; i < rt->n_acts; i++) {
        const pt_action *a = &rt->acts[i];
        if (a->kind != PT_ACT_FORWARD && a->kind != PT_ACT_RECV_ACT && a->kind != PT_ACT_RECV_GRAD)
            continue;
        rt_chunk *k = &rt->ch[a->chunk];
        if (rt->first_touch[i] && k->mb_slot[a->microbatch] < 0) {
            if (blocked || !slot_acquire(rt, a->chunk, a->microbatch)) {
                if (rt->recv_in_order && a->kind != PT_ACT_FORWARD)
                    break; /* matched by order: no later receive may overtake this one */
                blocked = 1;
                continue;
            }
        }
        if (a->kind == PT_ACT_FORWARD || rt->recv_posted[i] || k->mb_slot[a->microbatch] < 0)
            continue;
        int s = k->mb_slot[a->microbatch];
        pt_msg_id id = { a->kind == PT_ACT_RECV_ACT ? PT_ACT_SEND_ACT : PT_ACT_SEND_GRAD, a->microbatch, k->vstage,
                         rt->msg_step };
        void *buf = a->kind == PT_ACT_RECV_ACT ? (void *)pt_model_slot_input(k->m, s)
                                               : (void *)pt_model_slot_doutput(k->m, s);
        pt_status st = pt_link_recv_post(rt->link, i, buf, rt_act_bytes(rt, k, a->kind), world_of(rt, a->peer), &id,
                                         a->kind == PT_ACT_RECV_GRAD, rt_deadline(rt));
        if (st != PT_OK)
            return rt_fail_at(rt, st, "posting");
        rt->recv_posted[i] = 1;
    }
    return PT_OK;
}

/* A free staging buffer: a finished send's, a new one, or (at the cap) the oldest send's once done. */
static pt_status stage_get(pt_runtime *rt, int *out)
{
    PT_CHECK(sends_progress(rt));
    if (rt->n_stage_free == 0 && rt->n_stage < rt->cap_sends)
        rt->stage_free[rt->n_stage_free++] = rt->n_stage++;
    while (rt->n_stage_free == 0) {
        if (rt->n_sends == 0)
            return pt_fail(PT_EINTERNAL, "rank %d: no send staging buffer free and no send in flight", rt->rank);
        PT_CHECK(send_wait(rt, 0));
    }
    *out = rt->stage_free[--rt->n_stage_free];
    return PT_OK;
}

/* Starts the send of action a from backend memory buf: queued behind the compute stream; the
 * link copies it into its staging buffer and sends from there. */
static pt_status send_start(pt_runtime *rt, const pt_action *a, const void *buf, int dst_vstage)
{
    if (rt->n_sends == rt->cap_sends)
        return pt_fail(PT_EINTERNAL, "rank %d: more than %d sends in flight; please report it", rt->rank,
                       rt->cap_sends);
    int b = -1;
    PT_CHECK(stage_get(rt, &b));
    pt_msg_id id = { a->kind, a->microbatch, dst_vstage, rt->msg_step };
    size_t bytes = rt_act_bytes(rt, &rt->ch[a->chunk], a->kind);
    pt_status st =
        pt_link_send_begin(rt->link, b, buf, bytes, world_of(rt, a->peer), &id, a->kind == PT_ACT_SEND_GRAD);
    if (st != PT_OK) {
        rt->stage_free[rt->n_stage_free++] = b;
        return rt_fail_at(rt, st, "starting");
    }
    rt->sends[rt->n_sends++] = (rt_send){ a->chunk, a->microbatch, rt->cur, b, bytes };
    rt->send_fence[a->chunk] = 1;
    return PT_OK;
}

static pt_status recv_finish(pt_runtime *rt, int i)
{
    const pt_action *a = &rt->acts[i];
    if (!rt->recv_posted[i]) {
        PT_CHECK(slot_need(rt, a->chunk, a->microbatch));
        PT_CHECK(recv_post_ahead(rt, i));
        if (!rt->recv_posted[i])
            return pt_fail(PT_EINTERNAL, "rank %d: receive of action %d was not posted; please report it", rt->rank,
                           i);
    }
    rt->recv_posted[i] = 0;
    PT_CHECK(sends_flush(rt)); /* about to block on a peer: post what this rank has ready */
    char what[160];
    recv_what(rt, i, what, sizeof what);
    int64_t t0 = pt_now_ns();
    pt_status st = pt_link_recv_wait(rt->link, i, rt_deadline(rt), what);
    rt->wait_ns += pt_now_ns() - t0;
    return rt_wait_status(rt, st, a, a->peer, 1);
}

/* ---- compute ---- */

static float rt_loss_scale(const pt_runtime *rt) { return rt->loss_scale; }

/* Before the compute stream works on chunk c, it waits (pt_link_send_fence) for the sends begun
 * since the last fence that may still read c's slots (host-staged: their copies to the host; a
 * no-op for links that are done with a send's source when it begins). Only chunk c's actions
 * write c's slot memory (model.h: what slots share, they share within their chunk), and copies
 * into slots run behind those reads, so the compute stream runs on past a send until then. */
static pt_status copy_fence(pt_runtime *rt, int c)
{
    if (!rt->send_fence[c])
        return PT_OK;
    PT_CHECK(pt_link_send_fence(rt->link)); /* every send so far: the fence is cleared for all */
    memset(rt->send_fence, 0, (size_t)rt->V);
    return PT_OK;
}

/* train: a training step's forward (pt_model_forward_train: a chunked head makes its loss gradient
 * now); 0: evaluation. */
static pt_status do_forward(pt_runtime *rt, const pt_action *a, int train)
{
    int c = a->chunk, mb = a->microbatch;
    rt_chunk *k = &rt->ch[c];
    PT_CHECK(copy_fence(rt, c));
    PT_CHECK(slot_need(rt, c, mb));
    int s = k->mb_slot[mb];
    size_t bt = (size_t)rt->B * rt->T;
    if (k->has_emb)
        PT_CHECK(rt->be->memcpy_h2d(rt->stream, pt_model_slot_tokens(k->m, s), rt->tokens + (size_t)mb * bt,
                                    bt * sizeof(int32_t)));
    else if (k->prev_local >= 0) {
        rt_chunk *pk = &rt->ch[k->prev_local];
        int ps = pk->mb_slot[mb];
        if (ps < 0)
            return pt_fail(PT_EINTERNAL, "rank %d: mb %d of chunk %d has no output for chunk %d; please report it",
                           rt->rank, mb, k->prev_local, c);
        PT_CHECK(rt->be->memcpy_d2d(rt->stream, pt_model_slot_input(k->m, s), pt_model_slot_output(pk->m, ps),
                                    rt_bound_bytes(rt, k->first_layer)));
    }
    if (k->has_hl)
        PT_CHECK(rt->be->memcpy_h2d(rt->stream, pt_model_slot_targets(k->m, s), rt->targets + (size_t)mb * bt,
                                    bt * sizeof(int32_t)));
    PT_CHECK(train ? pt_model_forward_train(k->m, s, rt_loss_scale(rt)) : pt_model_forward(k->m, s));
    if (k->has_head) {
        double ls = 0;
        int64_t nt = 0;
        PT_CHECK(pt_model_slot_loss(k->m, s, &ls, &nt));
        if (rt->tpr == 0) { /* every rank of a tensor-parallel group holds the same losses: count them once */
            rt->loss_sum += ls;
            rt->loss_tokens += nt;
        }
    }
    return PT_OK;
}

/* Fills the slot's output gradient from the next chunk on this rank, when that is where it is. */
static pt_status take_local_grad(pt_runtime *rt, int c, int mb, int s)
{
    rt_chunk *k = &rt->ch[c];
    if (k->has_head || k->next_local < 0)
        return PT_OK;
    rt_chunk *nk = &rt->ch[k->next_local];
    int ns = nk->mb_slot[mb];
    if (ns < 0 || !nk->dgrad_pend[mb])
        return pt_fail(PT_EINTERNAL, "rank %d: mb %d of chunk %d has no input gradient for chunk %d; please report it",
                       rt->rank, mb, k->next_local, c);
    PT_CHECK(rt->be->memcpy_d2d(rt->stream, pt_model_slot_doutput(k->m, s), pt_model_slot_dinput(nk->m, ns),
                                rt_bound_bytes(rt, k->last_layer + 1)));
    nk->dgrad_pend[mb] = 0;
    slot_try_release(rt, k->next_local, mb);
    return PT_OK;
}

/* --overlap: ready ranges of chunk c, less the ranges the tied reduction still changes (d: the
 * deferred ranges left to cut out). */
static pt_status gs_ready_cut(pt_runtime *rt, int c, size_t lo, size_t hi, int d)
{
    if (lo >= hi)
        return PT_OK;
    if (d == 2)
        return pt_grad_sync_ready(rt->gs, c, lo, hi);
    size_t dl = rt->gs_defer[4 * c + 2 * d], dh = rt->gs_defer[4 * c + 2 * d + 1];
    if (dl >= dh || hi <= dl || dh <= lo)
        return gs_ready_cut(rt, c, lo, hi, d + 1);
    PT_CHECK(gs_ready_cut(rt, c, lo, dl > lo ? dl : lo, d + 1));
    return gs_ready_cut(rt, c, dh < hi ? dh : hi, hi, d + 1);
}

/* The models' gradient hook: during a chunk's last weight pass of the step, each finished layer's
 * range goes to the engine (on the CPU backend the kernels have run when the hook is called). */
static pt_status gs_hook(void *ctx, int layer, size_t lo, size_t hi)
{
    (void)layer;
    rt_gs_hook *h = ctx;
    pt_runtime *rt = h->rt;
    if (rt->gs_live != h->chunk)
        return PT_OK;
    if (!rt->gs_begun) {
        PT_CHECK(pt_grad_sync_begin(rt->gs, rt->step));
        rt->gs_begun = 1;
    }
    return gs_ready_cut(rt, h->chunk, lo, hi, 0);
}

static pt_status do_backward(pt_runtime *rt, const pt_action *a)
{
    int c = a->chunk, mb = a->microbatch;
    rt_chunk *k = &rt->ch[c];
    PT_CHECK(copy_fence(rt, c));
    int s = k->mb_slot[mb];
    if (s < 0)
        return pt_fail(PT_EINTERNAL, "rank %d: %s of mb %d chunk %d without its forward; please report it", rt->rank,
                       kind_name(a->kind), mb, c);
    rt->gs_live = rt->gs && a->kind != PT_ACT_BACKWARD_INPUT && rt->cur == rt->gs_last_wpass[c] ? c : -1;
    switch (a->kind) {
    case PT_ACT_BACKWARD:
        PT_CHECK(take_local_grad(rt, c, mb, s));
        PT_CHECK(pt_model_backward(k->m, s, rt_loss_scale(rt)));
        k->bwd_done[mb] = 1;
        break;
    case PT_ACT_BACKWARD_INPUT:
        PT_CHECK(take_local_grad(rt, c, mb, s));
        PT_CHECK(pt_model_backward_input(k->m, s, rt_loss_scale(rt)));
        break;
    case PT_ACT_BACKWARD_WEIGHT:
        PT_CHECK(pt_model_backward_weight(k->m, s));
        k->bwd_done[mb] = 1;
        break;
    case PT_ACT_FORWARD:
    case PT_ACT_SEND_ACT:
    case PT_ACT_RECV_ACT:
    case PT_ACT_SEND_GRAD:
    case PT_ACT_RECV_GRAD:
    case PT_ACT_REDUCE_GRADS:
    case PT_ACT_OPTIMIZER_STEP:
    case PT_ACT_KIND_COUNT:
        return pt_fail(PT_EINTERNAL, "do_backward called for %s", kind_name(a->kind));
    }
    rt->gs_live = -1;
    slot_try_release(rt, c, mb);
    return PT_OK;
}

/* ---- reductions ---- */

static pt_status coll_fail(pt_runtime *rt, pt_status st, const char *what)
{
    return pt_fail_wrap(st, "rank %d: %s failed (step %lld, action %d of %d)", rt->rank, what, (long long)rt->step,
                        rt->cur, rt->n_acts);
}

/* Sums n floats of backend memory x over the link's group gi (the tied group or the
 * data-parallel group) on every member; the link moves the memory as its kind does (pt_comm's
 * ring, through pinned host memory, or NCCL). The all-reduce counts as communication wait. */
static pt_status allreduce_grads(pt_runtime *rt, int gi, float *x, size_t n, const char *what)
{
    char w[192];
    snprintf(w, sizeof w, "%s (step %lld, action %d of %d)", what, (long long)rt->step, rt->cur, rt->n_acts);
    int64_t t0 = pt_now_ns();
    pt_status st = pt_link_allreduce(rt->link, gi, x, n, rt_deadline(rt), w);
    rt->wait_ns += pt_now_ns() - t0;
    if (st != PT_OK)
        return coll_fail(rt, st, what);
    return PT_OK;
}

/* The tied wte: grad = the embedding's + the LM head's, summed once per step. Each row of the head
 * twin comes from exactly one head layer (the whole head, or the shard holding that row; the
 * other chunks' twins hold exact zeros there), so every row is a sum of at most two non-zero
 * terms whatever the order: exact, and the one-process bits. This rank sums its own chunks'
 * parts, the ranks of the tied group all-reduce that, and every tied copy takes the result.
 * An untied LM head (llama's lm_head.weight) is the same without the embedding's term: the head
 * chunks' twins are their lm_head gradients, one non-zero term per row. */
static pt_status reduce_tied(pt_runtime *rt)
{
    /* this rank's vocabulary rows (all of them without tensor parallelism; the tied group pairs
     * the embedding and head ranks of one tensor-parallel index, which hold the same rows) */
    const size_t n = (size_t)rt->cfg->vocab_padded / rt->ntp * rt->cfg->n_embd;
    float *acc = NULL;
    if (rt->emb_chunk >= 0 && pt_model_tied(rt->cfg)) {
        pt_model *m = rt->ch[rt->emb_chunk].m;
        PT_CHECK(pt_model_reduce_tied_grads(m)); /* its own head layers' twin, if any */
        acc = pt_model_grads(m) + pt_model_find_tensor(m, "wte.weight")->offset;
    }
    for (int c = 0; c < rt->V; c++) {
        if (!rt->ch[c].has_hl || (c == rt->emb_chunk && pt_model_tied(rt->cfg)))
            continue;
        float *twin = pt_model_head_wte_grad(rt->ch[c].m);
        if (!acc)
            acc = twin;
        else
            PT_CHECK(rt->be->add(rt->stream, acc, acc, twin, n));
    }
    if (!acc)
        return PT_OK;
    if (rt->tied_group)
        PT_CHECK(allreduce_grads(rt, rt->tied_gi, acc, n, "REDUCE_GRADS (tied embedding/head all-reduce)"));
    for (int c = 0; c < rt->V; c++) { /* the copies: their gradient is their twin */
        float *twin = rt->ch[c].has_hl && (c != rt->emb_chunk || !pt_model_tied(rt->cfg))
                          ? pt_model_head_wte_grad(rt->ch[c].m)
                          : NULL;
        if (twin && twin != acc)
            PT_CHECK(rt->be->memcpy_d2d(rt->stream, twin, acc, n * sizeof(float)));
    }
    return PT_OK;
}

/* This replica's segment of chunk c's flat parameters (pt_comm_segment over the D replicas): the
 * part of the gradients its reduce-scatter sums, and with ZeRO-1 the part its optimizer updates. */
static void chunk_segment(const pt_runtime *rt, int c, size_t *lo, size_t *hi)
{
    pt_comm_segment(pt_model_n_params(rt->ch[c].m), rt->D, rt->d, lo, hi);
}

/* Sums of squares of this replica's pieces of chunk c's gradients: for each counted tensor (global
 * index g), the part inside this replica's segment goes to norm_buf[g * D + d]. Every other index
 * is another replica's (or 0: an empty piece), so the world sum of norm_buf is exact and the same
 * whether the gradients were all-gathered (--zero 0) or not (--zero 1). */
static pt_status segment_sumsq(pt_runtime *rt, int c)
{
    rt_chunk *k = &rt->ch[c];
    const float *g = pt_model_grads(k->m);
    size_t lo, hi;
    chunk_segment(rt, c, &lo, &hi);
    int nt = pt_model_n_tensors(k->m), gi = k->global_tensor0;
    for (int i = 0; i < nt; i++) {
        if (i == k->skip_tensor)
            continue;
        const pt_param *pr = pt_model_tensor(k->m, i);
        size_t a = pr->offset > lo ? pr->offset : lo, z = pr->offset + pr->numel < hi ? pr->offset + pr->numel : hi;
        double v = 0;
        /* elements other ranks of the tensor-parallel group also hold are counted by the first of them */
        size_t ra = pr->offset + pr->rep_lo, rz = pr->offset + pr->rep_hi;
        int skip = pr->rep_n > 1 && rt->tpr != pr->rep_first;
        size_t cut[2][2] = { { a, z }, { 0, 0 } };
        if (skip && ra < rz) {
            cut[0][1] = z < ra ? z : ra;
            cut[1][0] = a > rz ? a : rz;
            cut[1][1] = z;
        }
        for (int q = 0; q < 2; q++)
            if (cut[q][0] < cut[q][1]) {
                double w = 0;
                PT_CHECK(rt->be->sum_squares(rt->stream, &w, g + cut[q][0], cut[q][1] - cut[q][0]));
                v += w;
            }
        rt->norm_buf[((size_t)gi * rt->ntp + rt->tpr) * rt->D + rt->d] = v;
        gi++;
    }
    return PT_OK;
}

/* Tensor parallelism: the gradients of elements several ranks of the group hold, each a partial
 * sum (the norms under sp: each rank saw its rows; a replicated kv head: each rank its query
 * heads), summed over their holders in rank order after the data-parallel sum (which is linear:
 * the same total), packed into one all-reduce per group. Every TP layout has the same local
 * tensor table, so with ZeRO-1 every holder's data-parallel segment covers the same elements. */
static pt_status tp_pack_walk(pt_runtime *rt, int q, int unpack)
{
    size_t pos = 0;
    for (int c = 0; c < rt->V; c++) {
        pt_model *m = rt->ch[c].m;
        float *g = pt_model_grads(m);
        for (int i = 0; i < pt_model_n_tensors(m); i++) {
            const pt_param *pr = pt_model_tensor(m, i);
            if (!pr->rep_partial || (pr->rep_n == rt->ntp) != (q == 0))
                continue;
            size_t n = pr->rep_hi - pr->rep_lo;
            float *pk = (float *)rt->tp_pack[q] + pos, *x = g + pr->offset + pr->rep_lo;
            if (rt->tp_pack[q])
                PT_CHECK(rt->be->memcpy_d2d(rt->stream, unpack ? x : pk, unpack ? pk : x, n * sizeof(float)));
            pos += n;
        }
    }
    rt->tp_pack_n[q] = pos;
    return PT_OK;
}

static pt_status tp_sum_partials(pt_runtime *rt)
{
    for (int q = 0; q < 2; q++) {
        int gi = q == 0 ? rt->tp_gi : rt->kv_gi;
        if (gi < 0 || rt->tp_pack_n[q] == 0)
            continue;
        PT_CHECK(tp_pack_walk(rt, q, 0));
        PT_CHECK(rt->be->stream_sync(rt->stream));
        PT_CHECK(allreduce_grads(rt, gi, rt->tp_pack[q], rt->tp_pack_n[q],
                                 q == 0 ? "REDUCE_GRADS (tensor-parallel sum of the norms' gradients)"
                                        : "REDUCE_GRADS (tensor-parallel sum of the shared kv heads' gradients)"));
        PT_CHECK(tp_pack_walk(rt, q, 1));
    }
    return PT_OK;
}

/* The model's tensor-parallel collectives (pt_model_opts.tp): on the link's group of this
 * (replica, pipeline rank), after the work queued so far; their time counts as communication wait
 * and, profiled, as events of their own track (action -1, kind PT_ACT_REDUCE_GRADS is not used). */
static pt_status tp_collective(void *ctx, int op, float *x, size_t n, const char *what)
{
    pt_runtime *rt = ctx;
    char w[224];
    snprintf(w, sizeof w, "%s (step %lld, action %d of %d)", what, (long long)rt->step, rt->cur, rt->n_acts);
    int64_t t0 = pt_now_ns();
    pt_status st = rt->be->stream_sync(rt->stream);
    if (st == PT_OK)
        st = op == 0   ? pt_link_allreduce(rt->link, rt->tp_gi, x, n, rt_deadline(rt), w)
             : op == 1 ? pt_link_reduce_scatter(rt->link, rt->tp_gi, x, n, rt_deadline(rt), w)
                       : pt_link_allgather(rt->link, rt->tp_gi, x, n, rt_deadline(rt), w);
    int64_t t1 = pt_now_ns();
    rt->wait_ns += t1 - t0;
    rt->tp_ns += t1 - t0;
    if (st != PT_OK)
        return pt_fail_wrap(st, "rank %d: %s failed", rt->rank, w);
    if (rt->prof && pt_profile_enabled(rt->prof)) {
        const pt_action *a = rt->cur >= 0 && rt->cur < rt->n_acts ? &rt->acts[rt->cur] : NULL;
        int64_t off = pt_profile_now_ns(rt->prof) - pt_now_ns();
        pt_prof_event e = { .step = rt->step, .rank = rt->rank, .stage_rank = rt->p, .action = PT_PROF_TP_ACTION,
                            .kind = a ? a->kind : PT_ACT_FORWARD, .microbatch = a ? a->microbatch : -1,
                            .chunk = a ? a->chunk : -1, .vstage = a && a->chunk >= 0 ? rt->ch[a->chunk].vstage : -1,
                            .peer = -1, .start_ns = t0 + off, .end_ns = t1 + off, .wait_ns = t1 - t0 };
        PT_CHECK(pt_profile_record(rt->prof, &e));
    }
    return PT_OK;
}
static pt_status tp_allreduce(void *ctx, float *x, size_t n, const char *what) { return tp_collective(ctx, 0, x, n, what); }
static pt_status tp_reduce_scatter(void *ctx, float *x, size_t n, const char *what)
{
    return tp_collective(ctx, 1, x, n, what);
}
static pt_status tp_allgather(void *ctx, float *x, size_t n, const char *what) { return tp_collective(ctx, 2, x, n, what); }

/* Fixed-order reduce-scatter or all-gather of one chunk's buffer over the data-parallel group. */
static pt_status dp_collective(pt_runtime *rt, int gather, float *x, size_t n, const char *what)
{
    char w[192];
    snprintf(w, sizeof w, "%s (step %lld, action %d of %d)", what, (long long)rt->step, rt->cur, rt->n_acts);
    int64_t t0 = pt_now_ns();
    PT_CHECK(rt->be->stream_sync(rt->stream));
    pt_status st = gather ? pt_link_allgather(rt->link, rt->dp_gi, x, n, rt_deadline(rt), w)
                          : pt_link_reduce_scatter(rt->link, rt->dp_gi, x, n, rt_deadline(rt), w);
    rt->wait_ns += pt_now_ns() - t0;
    if (st != PT_OK)
        return coll_fail(rt, st, what);
    return PT_OK;
}

/* REDUCE_GRADS. The tied reduction, then with D > 1 each chunk's gradients reduce-scattered over
 * the replicas in a fixed order (x_0 + x_1 + ..., pt_comm_reduce_scatter), so each replica holds
 * the sum of its segment; --zero 0 then all-gathers them (every replica steps the whole chunk),
 * --zero 1 keeps them (each steps its segment and the parameters are all-gathered after). Both
 * give the same bits. Then the global norm: sums of squares per (tensor, segment) at fixed
 * indices, summed in that order on every rank (optim.h's rule). */
/* --overlap at REDUCE_GRADS: the ranges the tied reduction has just finished go to the engine, and
 * the wait for every bucket still in flight is this step's exposed data-parallel communication. */
static pt_status gs_finish(pt_runtime *rt)
{
    pt_status st = PT_OK;
    if (!rt->gs_begun) {
        st = pt_grad_sync_begin(rt->gs, rt->step);
        rt->gs_begun = st == PT_OK;
    }
    for (int c = 0; c < rt->V && st == PT_OK; c++)
        for (int d = 0; d < 2 && st == PT_OK; d++)
            if (rt->gs_defer[4 * c + 2 * d] < rt->gs_defer[4 * c + 2 * d + 1])
                st = pt_grad_sync_ready(rt->gs, c, rt->gs_defer[4 * c + 2 * d], rt->gs_defer[4 * c + 2 * d + 1]);
    if (st == PT_OK)
        st = rt->be->stream_sync(rt->stream);
    int64_t exposed = 0;
    if (st == PT_OK)
        st = pt_grad_sync_finish(rt->gs, rt_deadline(rt), &exposed);
    rt->gs_begun = 0;
    rt->wait_ns += exposed;
    if (st != PT_OK)
        return coll_fail(rt, st, "REDUCE_GRADS (overlapped data-parallel reduction)");
    if (rt->prof && pt_profile_enabled(rt->prof)) { /* the engine's buckets, on their own track */
        int64_t off = pt_profile_now_ns(rt->prof) - pt_now_ns();
        for (int b = 0; b < pt_grad_sync_n_buckets(rt->gs); b++) {
            pt_grad_sync_bucket_info bi;
            PT_CHECK(pt_grad_sync_bucket(rt->gs, b, &bi));
            pt_prof_event e = { .step = rt->step, .rank = rt->rank, .stage_rank = rt->p, .action = -1 - b,
                                .kind = PT_ACT_REDUCE_GRADS, .microbatch = b, .chunk = bi.chunk,
                                .vstage = rt->ch[bi.chunk].vstage, .peer = -1, .start_ns = bi.start_ns + off,
                                .end_ns = bi.end_ns + off, .wait_ns = 0 };
            PT_CHECK(pt_profile_record(rt->prof, &e));
        }
    }
    return PT_OK;
}

static pt_status do_reduce(pt_runtime *rt)
{
    PT_CHECK(sends_wait_all(rt));
    PT_CHECK(reduce_tied(rt));
    if (rt->gs)
        PT_CHECK(gs_finish(rt));
    for (int c = 0; !rt->gs && rt->D > 1 && c < rt->V; c++)
        PT_CHECK(dp_collective(rt, 0, pt_model_grads(rt->ch[c].m), pt_model_n_params(rt->ch[c].m),
                               "REDUCE_GRADS (data-parallel reduce-scatter)"));
    PT_CHECK(tp_sum_partials(rt));
    int nn = rt->n_norm;
    memset(rt->norm_buf, 0, (size_t)(nn + 2) * sizeof(double));
    for (int c = 0; c < rt->V; c++)
        PT_CHECK(segment_sumsq(rt, c));
    for (int c = 0; !rt->gs && rt->D > 1 && !rt->zero && c < rt->V; c++)
        PT_CHECK(dp_collective(rt, 1, pt_model_grads(rt->ch[c].m), pt_model_n_params(rt->ch[c].m),
                               "REDUCE_GRADS (data-parallel all-gather of the gradients)"));
    rt->norm_buf[nn] = rt->loss_sum;
    rt->norm_buf[nn + 1] = (double)rt->loss_tokens;
    if (rt->comm && rt->world > 1) {
        int64_t t0 = pt_now_ns();
        pt_status st = pt_comm_allreduce_f64(rt->comm, NULL, rt->norm_buf, (size_t)nn + 2, rt_deadline(rt));
        rt->wait_ns += pt_now_ns() - t0;
        if (st != PT_OK)
            return coll_fail(rt, st, "REDUCE_GRADS (gradient norm all-reduce)");
    }
    double total = 0.0;
    for (int i = 0; i < nn; i++)
        total += rt->norm_buf[i];
    rt->grad_norm = sqrt(total);
    rt->clip_scale = pt_clip_scale(rt->grad_norm, rt->adamw.grad_clip);
    rt->reduced = 1;
    return PT_OK;
}

/* ---- the step ---- */

static pt_status run_action(pt_runtime *rt, int i, float lr)
{
    const pt_action *a = &rt->acts[i];
    rt_chunk *k = a->chunk >= 0 && a->chunk < rt->V ? &rt->ch[a->chunk] : NULL;
    switch (a->kind) {
    case PT_ACT_FORWARD:
        return do_forward(rt, a, 1);
    case PT_ACT_BACKWARD:
    case PT_ACT_BACKWARD_INPUT:
    case PT_ACT_BACKWARD_WEIGHT:
        return do_backward(rt, a);
    case PT_ACT_SEND_ACT: {
        int s = k->mb_slot[a->microbatch];
        if (s < 0)
            return pt_fail(PT_EINTERNAL, "rank %d: SEND_ACT of mb %d chunk %d before its forward", rt->rank,
                           a->microbatch, a->chunk);
        return send_start(rt, a, pt_model_slot_output(k->m, s), k->vstage + 1);
    }
    case PT_ACT_SEND_GRAD: {
        int s = k->mb_slot[a->microbatch];
        if (s < 0 || !k->dgrad_pend[a->microbatch])
            return pt_fail(PT_EINTERNAL, "rank %d: SEND_GRAD of mb %d chunk %d without its input gradient", rt->rank,
                           a->microbatch, a->chunk);
        PT_CHECK(send_start(rt, a, pt_model_slot_dinput(k->m, s), k->vstage - 1));
        k->dgrad_pend[a->microbatch] = 0;
        slot_try_release(rt, a->chunk, a->microbatch);
        return PT_OK;
    }
    case PT_ACT_RECV_ACT:
    case PT_ACT_RECV_GRAD:
        return recv_finish(rt, i);
    case PT_ACT_REDUCE_GRADS:
        return do_reduce(rt);
    case PT_ACT_OPTIMIZER_STEP:
        if (!rt->reduced)
            return pt_fail(PT_EINTERNAL, "rank %d: OPTIMIZER_STEP before REDUCE_GRADS", rt->rank);
        if (!isfinite(rt->grad_norm) || !isfinite(rt->norm_buf[rt->n_norm]))
            return PT_OK; /* no update from a NaN/Inf step (every rank sees the same sums); applied = 0 */
        for (int c = 0; c < rt->V; c++)
            PT_CHECK(pt_optim_step(rt->ch[c].o, lr, rt->clip_scale));
        for (int c = 0; rt->zero && c < rt->V; c++) /* each replica updated its segment */
            PT_CHECK(dp_collective(rt, 1, pt_model_params(rt->ch[c].m), pt_model_n_params(rt->ch[c].m),
                                   "OPTIMIZER_STEP (ZeRO-1 all-gather of the parameters)"));
        rt->applied = 1;
        return PT_OK;
    case PT_ACT_KIND_COUNT:
        break;
    }
    return pt_fail(PT_EINTERNAL, "rank %d: action %d has unknown kind %d", rt->rank, i, (int)a->kind);
}

/* Frees every slot and forgets every transfer: the state a pass over an action list starts from. */
static pt_status list_reset(pt_runtime *rt)
{
    for (int c = 0; c < rt->V; c++) {
        rt_chunk *k = &rt->ch[c];
        for (int s = 0; s < k->n_slots; s++)
            if (k->slot_mb[s] >= 0)
                PT_CHECK(pt_model_slot_release(k->m, s));
        for (int s = 0; s < k->n_slots; s++)
            k->slot_mb[s] = -1;
        for (int mb = 0; mb < rt->M; mb++) {
            k->mb_slot[mb] = -1;
            k->bwd_done[mb] = 0;
            k->dgrad_pend[mb] = 0;
        }
        k->in_use = 0;
    }
    memset(rt->recv_posted, 0, (size_t)rt->n_acts);
    rt->n_sends = 0;
    rt->n_stage_free = rt->n_stage;
    for (int b = 0; b < rt->n_stage; b++)
        rt->stage_free[b] = b;
    pt_link_reset(rt->link);
    return PT_OK;
}

static pt_status step_reset(pt_runtime *rt, pt_dataset *data)
{
    PT_CHECK(list_reset(rt));
    for (int c = 0; c < rt->V; c++)
        PT_CHECK(pt_model_zero_grads(rt->ch[c].m));
    rt->loss_sum = 0;
    rt->loss_tokens = 0;
    rt->step_wait_ns = 0;
    rt->step_exposed_ns = 0;
    rt->tp_ns = 0;
    rt->reduced = 0;
    rt->clip_scale = 1.0f;
    rt->grad_norm = 0;
    rt->applied = 0;
    if (rt->tokens) {
        size_t bt = (size_t)rt->B * rt->T;
        for (int j = 0; j < rt->M; j++) {
            int64_t first = ((int64_t)rt->d * rt->M + j) * rt->B;
            PT_CHECK(pt_dataset_batch(data, PT_SPLIT_TRAIN, rt->step, first, rt->B, rt->T, rt->tokens + j * bt,
                                      rt->targets + j * bt));
        }
    }
    if (rt->n_hl > 0) {
        /* The loss scale is 1 / (targets >= 0 in the GLOBAL batch), as in one process (train.h), so
         * the head counts the other replicas' targets too (the data are a pure function). */
        size_t bt = (size_t)rt->B * rt->T;
        int64_t n_tgt = 0;
        for (int dd = 0; dd < rt->D; dd++) {
            for (int j = 0; j < rt->M; j++) {
                const int32_t *tg = rt->targets + j * bt;
                if (dd != rt->d) {
                    int64_t first = ((int64_t)dd * rt->M + j) * rt->B;
                    PT_CHECK(pt_dataset_batch(data, PT_SPLIT_TRAIN, rt->step, first, rt->B, rt->T, rt->scratch_tok,
                                              rt->scratch_tgt));
                    tg = rt->scratch_tgt;
                }
                for (size_t q = 0; q < bt; q++)
                    n_tgt += tg[q] >= 0;
            }
        }
        rt->n_targets = n_tgt;
        rt->loss_scale = pt_loss_scale_for(n_tgt);
    }
    return PT_OK;
}

/* Abandons what a failed step left in flight, so destroy and the next step start clean. */
static void step_abandon(pt_runtime *rt)
{
    /* pt_comm_destroy frees requests never waited for; here we only forget them. The link aborts
     * a failed job's transfers at destroy. */
    rt->n_sends = 0;
    rt->failed = 1;
    pt_grad_sync_abort(rt->gs);
    rt->gs_begun = 0;
    rt->gs_live = -1;
    if (rt->recv_posted)
        memset(rt->recv_posted, 0, (size_t)rt->n_acts);
    pt_link_reset(rt->link);
}

/* Which part of a step an action's host time counts in (pt_runtime_step_info): 0 forward,
 * 1 backward, 2 reductions + optimizer, -1 transfers (their waits are comm_wait_s). */
static int step_phase(pt_action_kind k)
{
    switch (k) {
    case PT_ACT_FORWARD: return 0;
    case PT_ACT_BACKWARD:
    case PT_ACT_BACKWARD_INPUT:
    case PT_ACT_BACKWARD_WEIGHT: return 1;
    case PT_ACT_REDUCE_GRADS:
    case PT_ACT_OPTIMIZER_STEP: return 2;
    case PT_ACT_SEND_ACT:
    case PT_ACT_RECV_ACT:
    case PT_ACT_SEND_GRAD:
    case PT_ACT_RECV_GRAD:
    case PT_ACT_KIND_COUNT: return -1;
    }
    return -1;
}

/* The actions the profiler times on the stream (the rest are host-side: sends, receives). */
static int prof_on_stream(pt_action_kind k)
{
    return pt_action_is_compute(k) || k == PT_ACT_REDUCE_GRADS || k == PT_ACT_OPTIMIZER_STEP;
}

/* Markers and pending events for a list of n actions (kept across steps, grown on demand). */
static pt_status markers_ready(pt_runtime *rt, int n)
{
    if (n < 1)
        n = 1;
    if (rt->n_pend < n) {
        pt_prof_event *pe = realloc(rt->pend, (size_t)n * sizeof *pe);
        if (!pe)
            return pt_fail(PT_ENOMEM, "rank %d: out of host memory for the profile's pending events", rt->rank);
        rt->pend = pe;
        rt->n_pend = n;
    }
    const int want = 1 + 2 * n;
    if (rt->n_mk < want) {
        pt_marker **mk = realloc(rt->mk, (size_t)want * sizeof *mk);
        if (!mk)
            return pt_fail(PT_ENOMEM, "rank %d: out of host memory for the profile's timeline markers", rt->rank);
        rt->mk = mk;
        for (; rt->n_mk < want; rt->n_mk++)
            PT_CHECK(rt->be->marker_create(&rt->mk[rt->n_mk]));
    }
    return PT_OK;
}

/* After the step's last stream sync (all its actions ran): the stream-timed actions' events, on
 * the profile's clock. */
static pt_status markers_flush(pt_runtime *rt)
{
    for (int i = 0; i < rt->n_acts; i++) {
        if (!prof_on_stream(rt->acts[i].kind))
            continue;
        int64_t b = 0, e = 0;
        PT_CHECK(rt->be->marker_elapsed_ns(rt->mk[0], rt->mk[1 + 2 * i], &b));
        PT_CHECK(rt->be->marker_elapsed_ns(rt->mk[0], rt->mk[2 + 2 * i], &e));
        rt->pend[i].start_ns = rt->mk_anchor_ns + b;
        rt->pend[i].end_ns = rt->mk_anchor_ns + (e > b ? e : b);
        PT_CHECK(pt_profile_record(rt->prof, &rt->pend[i]));
    }
    return PT_OK;
}

pt_status pt_runtime_step(pt_runtime *rt, pt_dataset *data, int64_t step, float lr, pt_runtime_step_info *info)
{
    if (!rt || (!data && rt->tokens))
        return pt_fail(PT_EINVAL, "pt_runtime_step: runtime and data set are required");
    int64_t t_step = pt_now_ns();
    int64_t phase_ns[3] = { 0 }; /* step_phase */
    rt->step = step;
    rt->msg_step = step;
    rt->cur = -1;
    const int timed = rt->prof && pt_profile_enabled(rt->prof);
    const int marks = timed && rt->be->marker_record != NULL;
    pt_status st = PT_OK;
    if (marks) { /* the anchor, on an idle stream: reached as it is recorded */
        st = markers_ready(rt, rt->n_acts);
        if (st == PT_OK)
            st = rt->be->stream_sync(rt->stream);
        if (st == PT_OK)
            st = rt->be->marker_record(rt->stream, rt->mk[0]);
        if (st != PT_OK)
            return rt_fail_at(rt, st, "starting the step's timeline");
        rt->mk_anchor_ns = pt_profile_now_ns(rt->prof);
    }
    st = step_reset(rt, data);
    if (st != PT_OK)
        return rt_fail_at(rt, st, "reading the batch");
    for (int i = 0; i < rt->n_acts; i++) {
        const pt_action *a = &rt->acts[i];
        rt->cur = i;
        if (rt->link) {
            PT_TRY(recv_post_ahead(rt, i), fail);
            PT_TRY(sends_progress(rt), fail);
        }
        rt->wait_ns = 0;
        const int on_stream = timed && prof_on_stream(a->kind), marked = on_stream && marks;
        if (marked)
            PT_TRY(rt->be->marker_record(rt->stream, rt->mk[1 + 2 * i]), fail);
        int64_t t0 = timed ? pt_profile_now_ns(rt->prof) : 0;
        int64_t t_act = pt_now_ns();
        PT_TRY(run_action(rt, i, lr), fail);
        int ph = step_phase(a->kind);
        if (ph >= 0)
            phase_ns[ph] += pt_now_ns() - t_act - rt->wait_ns;
        if (timed) {
            /* Stream-timed actions end at their closing marker (converted at the step's end), or,
             * on a backend without markers, when the stream has drained after them. */
            if (marked)
                PT_TRY(rt->be->marker_record(rt->stream, rt->mk[2 + 2 * i]), fail);
            else if (on_stream)
                PT_TRY(rt->be->stream_sync(rt->stream), fail);
            rt_chunk *k = a->chunk >= 0 && a->chunk < rt->V ? &rt->ch[a->chunk] : NULL;
            pt_prof_event e = { .step = step, .rank = rt->rank, .stage_rank = rt->p, .action = i, .kind = a->kind,
                                .microbatch = a->microbatch, .chunk = a->chunk, .vstage = k ? k->vstage : -1,
                                .peer = a->peer, .start_ns = t0, .end_ns = pt_profile_now_ns(rt->prof),
                                .wait_ns = rt->wait_ns };
            if (marked)
                rt->pend[i] = e;
            else
                PT_TRY(pt_profile_record(rt->prof, &e), fail);
        }
        rt->step_wait_ns += rt->wait_ns;
        if (a->kind == PT_ACT_REDUCE_GRADS || a->kind == PT_ACT_OPTIMIZER_STEP)
            rt->step_exposed_ns += rt->wait_ns;
    }
    rt->cur = rt->n_acts;
    rt->wait_ns = 0;
    PT_TRY(sends_wait_all(rt), fail);
    rt->step_wait_ns += rt->wait_ns;
    PT_TRY(rt->be->stream_sync(rt->stream), fail);
    if (marks)
        PT_TRY(markers_flush(rt), fail);
    if (!rt->reduced) {
        st = pt_fail(PT_EINVAL, "rank %d: the schedule's action list has no REDUCE_GRADS", rt->rank);
        goto fail;
    }
    if (rt->prof)
        pt_profile_note_peak_bytes(rt->prof, pt_backend_bytes_peak());
    if (info) {
        int nn = rt->n_norm;
        info->n_tokens = (int64_t)rt->norm_buf[nn + 1];
        info->loss = info->n_tokens > 0 ? rt->norm_buf[nn] / (double)info->n_tokens : 0.0;
        info->grad_norm = rt->grad_norm;
        info->clip_scale = rt->clip_scale;
        info->applied = rt->applied;
        info->step_s = pt_seconds_between(t_step, pt_now_ns());
        info->comm_wait_s = (double)rt->step_wait_ns * 1e-9;
        info->tp_comm_s = (double)rt->tp_ns * 1e-9;
        info->exposed_comm_s = (double)rt->step_exposed_ns * 1e-9;
        info->fwd_s = (double)phase_ns[0] * 1e-9;
        info->bwd_s = (double)phase_ns[1] * 1e-9;
        info->optim_s = (double)phase_ns[2] * 1e-9;
    }
    return PT_OK;
fail:
    step_abandon(rt);
    return st;
}

/* ---- held-out evaluation ---- */

/* touch[i] = 1 where action i of the current list is the first FORWARD or RECV_ACT of its
 * (micro-batch, chunk): the action that takes the pair's slot. */
static pt_status mark_first_touch(pt_runtime *rt, unsigned char *touch)
{
    unsigned char *seen = calloc((size_t)rt->V * rt->M, 1);
    if (!seen)
        return pt_fail(PT_ENOMEM, "out of host memory");
    memset(touch, 0, (size_t)rt->n_acts);
    for (int i = 0; i < rt->n_acts; i++) {
        const pt_action *a = &rt->acts[i];
        size_t ix = (size_t)a->chunk * rt->M + a->microbatch;
        if ((a->kind == PT_ACT_FORWARD || a->kind == PT_ACT_RECV_ACT) && !seen[ix]) {
            seen[ix] = 1;
            touch[i] = 1;
        }
    }
    free(seen);
    return PT_OK;
}

/* Gives (c, mb)'s slot back after a forward that has no backward. */
static pt_status eval_release(pt_runtime *rt, int c, int mb)
{
    rt_chunk *k = &rt->ch[c];
    int s = k->mb_slot[mb];
    if (s < 0)
        return PT_OK;
    PT_CHECK(pt_model_slot_release(k->m, s));
    k->bwd_done[mb] = 1;
    k->dgrad_pend[mb] = 0;
    slot_try_release(rt, c, mb);
    return PT_OK;
}

/* One pass over this rank's forward-only list (the current acts): micro-batch j is the B
 * sequences of eval step ks[2j] from sample ks[2j+1]. A pair's slot is given back as soon as its
 * output has left: scored (head), copied into the next chunk on this rank, or staged for sending. */
static pt_status eval_pass(pt_runtime *rt, pt_dataset *data, const int64_t *ks, int n, pt_eval_stats *acc)
{
    size_t bt = (size_t)rt->B * rt->T;
    for (int j = 0; rt->tokens && j < n; j++)
        PT_CHECK(pt_dataset_batch(data, PT_SPLIT_EVAL, ks[2 * j], ks[2 * j + 1], rt->B, rt->T, rt->tokens + j * bt,
                                  rt->targets + j * bt));
    PT_CHECK(list_reset(rt));
    for (int i = 0; i < rt->n_acts; i++) {
        const pt_action *a = &rt->acts[i];
        rt_chunk *k = &rt->ch[a->chunk];
        rt->cur = i;
        if (rt->link) {
            PT_CHECK(recv_post_ahead(rt, i));
            PT_CHECK(sends_progress(rt));
        }
        switch (a->kind) {
        case PT_ACT_RECV_ACT:
            PT_CHECK(recv_finish(rt, i));
            break;
        case PT_ACT_FORWARD:
            PT_CHECK(do_forward(rt, a, 0));
            if (k->prev_local >= 0)
                PT_CHECK(eval_release(rt, k->prev_local, a->microbatch));
            if (k->has_head) {
                pt_eval_stats other; /* the other ranks of a tensor-parallel group: the same scores, not counted */
                memset(&other, 0, sizeof other);
                PT_CHECK(pt_eval_score_slot(k->m, k->mb_slot[a->microbatch], data,
                                            rt->targets + (size_t)a->microbatch * bt, rt->B, rt->T,
                                            rt->ev_pred, rt->tpr == 0 ? acc : &other));
                PT_CHECK(eval_release(rt, a->chunk, a->microbatch));
            }
            break;
        case PT_ACT_SEND_ACT:
            PT_CHECK(run_action(rt, i, 0.0f));
            PT_CHECK(eval_release(rt, a->chunk, a->microbatch));
            break;
        default:
            return pt_fail(PT_EINTERNAL, "rank %d: a %s in a forward-only list; please report it", rt->rank,
                           kind_name(a->kind));
        }
    }
    rt->cur = rt->n_acts;
    PT_CHECK(sends_wait_all(rt));
    return rt->be->stream_sync(rt->stream);
}

pt_status pt_runtime_eval(pt_runtime *rt, pt_dataset *data, int n_batches, int batch_seqs, pt_eval_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!rt || n_batches < 0 || (!data && rt->tokens))
        return pt_fail(PT_EINVAL, "pt_runtime_eval: runtime, data set and n_batches >= 0 are required");
    if (batch_seqs <= 0)
        batch_seqs = rt->B;
    if (batch_seqs % rt->B != 0)
        return pt_fail(PT_EINVAL, "held-out eval batches of %d sequences cannot be cut into micro-batches of %d; "
                                  "make the eval batch a multiple of --micro-batch-size",
                       batch_seqs, rt->B);
    int64_t t0 = pt_now_ns();
    pt_status st = PT_OK;
    pt_schedule *ev = NULL;
    int64_t *ks = malloc(2 * (size_t)rt->M * sizeof(int64_t));
    if (!ks)
        return pt_fail(PT_ENOMEM, "out of host memory");
    if (rt->head_chunk >= 0 && !rt->ev_pred)
        rt->ev_pred = malloc((size_t)rt->B * rt->T * sizeof(int32_t));
    if (rt->head_chunk >= 0 && !rt->ev_pred) {
        free(ks);
        return pt_fail(PT_ENOMEM, "out of host memory for the evaluation");
    }
    /* Micro-batch q of the eval is eval step q / per from sample (q % per) * B; this replica takes
     * q = d, d + D, ..., in rounds of at most M micro-batches. */
    int per = batch_seqs / rt->B;
    int64_t n_items = (int64_t)n_batches * per;
    int mine = rt->d < n_items ? (int)((n_items - rt->d + rt->D - 1) / rt->D) : 0;
    const pt_action *train_acts = rt->acts;
    int train_n = rt->n_acts;
    for (int done = 0; done < mine && st == PT_OK; done += rt->M) {
        int n = mine - done < rt->M ? mine - done : rt->M;
        for (int j = 0; j < n; j++) {
            int64_t q = rt->d + (int64_t)(done + j) * rt->D;
            ks[2 * j] = q / per;
            ks[2 * j + 1] = (q % per) * rt->B;
        }
        if (!ev || ev->n_microbatches != n) {
            pt_sched_destroy(ev);
            ev = NULL;
            st = pt_sched_forward_only(rt->sched, n, &ev);
            if (st != PT_OK)
                break;
        }
        /* The eval list is the training list without its backward half, so every per-action array
         * (sized by the training list) holds it. */
        if (ev->n_actions[rt->p] > train_n) {
            st = pt_fail(PT_EINTERNAL, "rank %d: the eval list is longer than the training list; please report it",
                         rt->rank);
            break;
        }
        rt->acts = ev->actions[rt->p];
        rt->n_acts = ev->n_actions[rt->p];
        rt->msg_step = ((int64_t)1 << 22) | (rt->eval_seq++ & (((int64_t)1 << 22) - 1));
        st = mark_first_touch(rt, rt->first_touch);
        if (st == PT_OK)
            st = eval_pass(rt, data, ks, n, out);
    }
    /* back to the training list (its first touches were overwritten) */
    rt->acts = train_acts;
    rt->n_acts = train_n;
    rt->msg_step = rt->step;
    if (st == PT_OK)
        st = mark_first_touch(rt, rt->first_touch);
    pt_sched_destroy(ev);
    free(ks);
    if (st != PT_OK) {
        step_abandon(rt);
        return pt_fail_wrap(st, "rank %d: held-out eval after step %lld", rt->rank, (long long)rt->step);
    }
    /* Totals over the job: head ranks hold them, the others add zeros. */
    double v[5] = { out->loss, (double)out->n_targets, (double)out->n_correct, (double)out->n_total,
                    (double)out->is_task };
    if (rt->comm && rt->world > 1) {
        st = pt_comm_allreduce_f64(rt->comm, NULL, v, 5, rt_deadline(rt));
        if (st != PT_OK) {
            rt->failed = 1;
            return pt_fail_wrap(st, "rank %d: summing the held-out eval after step %lld", rt->rank,
                                (long long)rt->step);
        }
    }
    out->n_targets = (int64_t)v[1];
    out->n_correct = (int64_t)v[2];
    out->n_total = (int64_t)v[3];
    out->is_task = v[4] > 0;
    out->loss = out->n_targets > 0 ? v[0] / v[1] : 0.0;
    out->seconds = pt_seconds_between(t0, pt_now_ns());
    return PT_OK;
}

/* ---- create ---- */

/* Dry run of the list with the slot rules (sends complete at once): the most pairs each chunk holds. */
static pt_status dry_run_slots(pt_runtime *rt, int *peak)
{
    int V = rt->V, M = rt->M;
    unsigned char *held = calloc((size_t)V * M, 1), *bwd = calloc((size_t)V * M, 1), *dg = calloc((size_t)V * M, 1);
    int *in_use = calloc((size_t)V, sizeof(int));
    pt_status st = PT_OK;
    if (!held || !bwd || !dg || !in_use) {
        st = pt_fail(PT_ENOMEM, "out of host memory for the slot dry run");
        goto out;
    }
    for (int c = 0; c < V; c++)
        peak[c] = 0;
#define IX(c, mb) ((size_t)(c) * M + (mb))
#define TRY_FREE(c, mb)                                                         \
    do {                                                                        \
        if (held[IX(c, mb)] && bwd[IX(c, mb)] && !dg[IX(c, mb)]) {              \
            held[IX(c, mb)] = 0;                                                \
            in_use[c]--;                                                        \
        }                                                                       \
    } while (0)
    for (int i = 0; i < rt->n_acts; i++) {
        const pt_action *a = &rt->acts[i];
        int c = a->chunk, mb = a->microbatch;
        switch (a->kind) {
        case PT_ACT_FORWARD:
        case PT_ACT_RECV_ACT:
            if (rt->first_touch[i]) {
                held[IX(c, mb)] = 1;
                bwd[IX(c, mb)] = 0;
                dg[IX(c, mb)] = !rt->ch[c].has_emb;
                if (++in_use[c] > peak[c])
                    peak[c] = in_use[c];
            }
            break;
        case PT_ACT_BACKWARD:
        case PT_ACT_BACKWARD_INPUT:
            if (rt->ch[c].next_local >= 0 && !rt->ch[c].has_head) {
                int nc = rt->ch[c].next_local;
                dg[IX(nc, mb)] = 0;
                TRY_FREE(nc, mb);
            }
            if (a->kind == PT_ACT_BACKWARD) {
                bwd[IX(c, mb)] = 1;
                TRY_FREE(c, mb);
            }
            break;
        case PT_ACT_BACKWARD_WEIGHT:
            bwd[IX(c, mb)] = 1;
            TRY_FREE(c, mb);
            break;
        case PT_ACT_SEND_GRAD:
            dg[IX(c, mb)] = 0;
            TRY_FREE(c, mb);
            break;
        case PT_ACT_SEND_ACT:
        case PT_ACT_RECV_GRAD:
        case PT_ACT_REDUCE_GRADS:
        case PT_ACT_OPTIMIZER_STEP:
        case PT_ACT_KIND_COUNT:
            break;
        }
    }
#undef TRY_FREE
#undef IX
    for (int c = 0; c < V; c++)
        if (peak[c] < 1)
            peak[c] = 1;
out:
    free(held);
    free(bwd);
    free(dg);
    free(in_use);
    return st;
}

/* Checks the action list against the plan and marks first touches. */
static pt_status check_actions(pt_runtime *rt)
{
    int n_ar = 0, n_step = 0;
    unsigned char *seen = calloc((size_t)rt->V * rt->M, 1);
    if (!seen)
        return pt_fail(PT_ENOMEM, "out of host memory");
    pt_status st = PT_OK;
    for (int i = 0; i < rt->n_acts && st == PT_OK; i++) {
        const pt_action *a = &rt->acts[i];
        switch (a->kind) {
        case PT_ACT_REDUCE_GRADS:
            n_ar++;
            continue;
        case PT_ACT_OPTIMIZER_STEP:
            n_step++;
            continue;
        case PT_ACT_FORWARD:
        case PT_ACT_BACKWARD:
        case PT_ACT_BACKWARD_INPUT:
        case PT_ACT_BACKWARD_WEIGHT:
        case PT_ACT_SEND_ACT:
        case PT_ACT_RECV_ACT:
        case PT_ACT_SEND_GRAD:
        case PT_ACT_RECV_GRAD:
            break;
        case PT_ACT_KIND_COUNT:
            st = pt_fail(PT_EINVAL, "rank %d: action %d has an unknown kind", rt->p, i);
            continue;
        }
        if (a->chunk < 0 || a->chunk >= rt->V || a->microbatch < 0 || a->microbatch >= rt->M) {
            st = pt_fail(PT_EINVAL, "schedule rank %d, action %d: micro-batch %d or chunk %d out of range", rt->p, i,
                         a->microbatch, a->chunk);
            break;
        }
        rt_chunk *k = &rt->ch[a->chunk];
        int want = -2;
        if (a->kind == PT_ACT_SEND_ACT || a->kind == PT_ACT_RECV_GRAD)
            want = k->next_rank;
        else if (a->kind == PT_ACT_RECV_ACT || a->kind == PT_ACT_SEND_GRAD)
            want = k->prev_rank;
        if (want != -2 && want == rt->p) {
            st = pt_fail(PT_EINVAL,
                         "schedule rank %d, action %d (%s mb %d chunk %d): the neighbouring virtual stage of %d is on "
                         "this same rank, which hands data over locally; remove the send/receive",
                         rt->p, i, kind_name(a->kind), a->microbatch, a->chunk, k->vstage);
            break;
        }
        if (want != -2 && (want < 0 || a->peer != want)) {
            st = pt_fail(PT_EINVAL,
                         "schedule rank %d, action %d (%s mb %d chunk %d): peer %d does not hold the neighbouring "
                         "stage of virtual stage %d (rank %d does); regenerate the schedule for this plan",
                         rt->p, i, kind_name(a->kind), a->microbatch, a->chunk, a->peer, k->vstage, want);
            break;
        }
    }
    free(seen);
    if (st == PT_OK)
        st = mark_first_touch(rt, rt->first_touch);
    if (st == PT_OK && (n_ar != 1 || n_step != 1))
        st = pt_fail(PT_EINVAL, "schedule rank %d has %d REDUCE_GRADS and %d OPTIMIZER_STEP actions; it needs one of each",
                     rt->p, n_ar, n_step);
    return st;
}

/* How many stages (same replicas, uniform split) would fit a per-rank limit, by the planner. */
static int stages_that_fit(const pt_runtime *rt, double limit)
{
    pt_device dev;
    if (pt_device_load("cpu", &dev) != PT_OK)
        return -1;
    pt_device_set_precision(&dev, rt->precision == PT_PRECISION_BF16, !rt->no_stash);
    int L = pt_model_n_layers(rt->cfg);
    for (int P2 = rt->P + 1; P2 <= L; P2++) {
        pt_topology topo;
        if (pt_topology_init(&topo, &dev, 1, P2 * rt->D) != PT_OK)
            return -1;
        pt_plan_request rq;
        pt_plan_request_init(&rq);
        rq.method = "uniform";
        rq.n_devices = P2 * rt->D;
        rq.n_stages = P2;
        rq.n_replicas = rt->D;
        rq.n_chunks = 1;
        rq.schedule = "1f1b";
        rq.micro_batch_size = rt->B;
        rq.n_microbatches = rt->M;
        rq.seq_len = rt->T;
        rq.recompute = 0;
        pt_plan *p = NULL;
        if (pt_plan_make(rt->cfg, &dev, &topo, NULL, &rq, &p) != PT_OK)
            continue;
        int ok = pt_plan_check_memory(p, limit) == PT_OK;
        pt_plan_destroy(p);
        if (ok)
            return P2;
    }
    pt_clear_error();
    return -1;
}

static pt_status mem_refuse(pt_runtime *rt, double need, const char *what)
{
    double lim = (double)rt->mem_limit_bytes;
    int fit = stages_that_fit(rt, lim);
    if (fit > 0)
        return pt_fail(PT_ENOMEM,
                       "rank %d needs %.1f MiB (%s) but --mem-limit is %.1f MiB per rank; %d stages would fit "
                       "(--stages %d)",
                       rt->rank, need / 1048576.0, what, lim / 1048576.0, fit, fit);
    return pt_fail(PT_ENOMEM,
                   "rank %d needs %.1f MiB (%s) but --mem-limit is %.1f MiB per rank, and no stage count up to one "
                   "layer per stage fits; raise --mem-limit or lower --micro-batch-size / --seq-len",
                   rt->rank, need / 1048576.0, what, lim / 1048576.0);
}

/* The job's pipes and groups in one global order, the same on every rank: the pipes
 * (sender, receiver, activation/gradient) the schedule uses, per replica; the tied groups, per
 * replica; the data-parallel groups, per pipeline rank. Then the link over them (collective). */
static pt_status link_setup(pt_runtime *rt)
{
    const pt_schedule *sc = rt->sched;
    const int P = rt->P, D = rt->D, T = rt->ntp;
    /* groups: tied per (replica, tp rank), data-parallel per (pipeline rank, tp rank), tensor-parallel
     * per (replica, pipeline rank), shared-kv per (replica, pipeline rank, kv head) */
    const int n_tg = rt->n_tied > 1 ? D * T : 0, n_dg = D > 1 ? P * T : 0, n_pg = T > 1 ? D * P : 0;
    const int n_kg = rt->kv_n > 1 ? D * P * (T / rt->kv_n) : 0;
    unsigned char *used = calloc((size_t)P * P * 2, 1);
    int *dp = malloc((size_t)P * D * T * sizeof(int));
    int *tied = malloc((size_t)(rt->n_tied > 0 ? rt->n_tied : 1) * D * T * sizeof(int));
    int *tpm = malloc((size_t)D * P * T * sizeof(int)); /* the tp groups' and the kv groups' members */
    int *kvm = malloc((size_t)D * P * T * sizeof(int));
    pt_link_channel *chs = calloc((size_t)D * T * P * P * 2 + 1, sizeof(*chs));
    pt_link_group *grs = calloc((size_t)(n_tg + n_dg + n_pg + n_kg) + 1, sizeof(*grs));
    pt_status st = PT_OK;
    if (!used || !dp || !tied || !tpm || !kvm || !chs || !grs) {
        st = pt_fail(PT_ENOMEM, "out of host memory");
        goto out;
    }
    for (int p = 0; p < P; p++)
        for (int i = 0; i < sc->n_actions[p]; i++) {
            const pt_action *a = &sc->actions[p][i];
            if (a->kind == PT_ACT_SEND_ACT || a->kind == PT_ACT_SEND_GRAD)
                used[((size_t)p * P + a->peer) * 2 + (a->kind == PT_ACT_SEND_GRAD)] = 1;
        }
    int n_ch = 0, n_gr = 0;
    for (int d = 0; d < D; d++)
        for (int t = 0; t < T; t++)
            for (int p = 0; p < P; p++)
                for (int q = 0; q < P; q++)
                    for (int k = 0; k < 2; k++)
                        if (used[((size_t)p * P + q) * 2 + k])
                            chs[n_ch++] = (pt_link_channel){ .sender = world_at(rt, d, p, t),
                                                             .receiver = world_at(rt, d, q, t), .is_grad = k };
    for (int g = 0; g < n_tg; g++) { /* g = d * T + t */
        for (int i = 0; i < rt->n_tied; i++)
            tied[g * rt->n_tied + i] = world_at(rt, g / T, rt->tied_ranks[i], g % T);
        grs[n_gr++] = (pt_link_group){ .n = rt->n_tied, .members = tied + g * rt->n_tied,
                                       .g = g == rt->d * T + rt->tpr ? rt->tied_group : NULL };
    }
    for (int g = 0; g < n_dg; g++) { /* g = p * T + t */
        for (int d = 0; d < D; d++)
            dp[g * D + d] = world_at(rt, d, g / T, g % T);
        grs[n_gr++] = (pt_link_group){ .n = D, .members = dp + g * D,
                                       .g = g == rt->p * T + rt->tpr ? rt->dp_group : NULL };
    }
    for (int g = 0; g < n_pg; g++) { /* g = d * P + p */
        for (int t = 0; t < T; t++)
            tpm[g * T + t] = world_at(rt, g / P, g % P, t);
        grs[n_gr++] = (pt_link_group){ .n = T, .members = tpm + g * T,
                                       .g = g == rt->d * P + rt->p ? rt->tp_group : NULL };
    }
    for (int g = 0; g < n_kg; g++) { /* g = (d * P + p) * (T / kv_n) + h: ranks h * kv_n .. of that tp group */
        const int nh = T / rt->kv_n, base = g / nh, h = g % nh;
        for (int i = 0; i < rt->kv_n; i++)
            kvm[g * rt->kv_n + i] = world_at(rt, base / P, base % P, h * rt->kv_n + i);
        grs[n_gr++] = (pt_link_group){ .n = rt->kv_n, .members = kvm + g * rt->kv_n,
                                       .g = base == rt->d * P + rt->p && h == rt->tpr / rt->kv_n ? rt->kv_group : NULL };
    }
    rt->tied_gi = rt->tied_group ? rt->d * T + rt->tpr : -1;
    rt->dp_gi = rt->dp_group ? n_tg + rt->p * T + rt->tpr : -1;
    rt->tp_gi = rt->tp_group ? n_tg + n_dg + rt->d * P + rt->p : -1;
    rt->kv_gi = rt->kv_group ? n_tg + n_dg + n_pg + (rt->d * P + rt->p) * (T / rt->kv_n) + rt->tpr / rt->kv_n : -1;
    int n_recv = 0;
    for (int i = 0; i < rt->n_acts; i++)
        n_recv += rt->acts[i].kind == PT_ACT_RECV_ACT || rt->acts[i].kind == PT_ACT_RECV_GRAD;
    size_t red = 0;
    if (rt->tied_group)
        red = (size_t)rt->cfg->vocab_padded / T * rt->cfg->n_embd;
    for (int c = 0; rt->dp_group && c < rt->V; c++)
        if (pt_model_n_params(rt->ch[c].m) > red)
            red = pt_model_n_params(rt->ch[c].m);
    if (T > 1) { /* the models' (N,C) partial sums and the head's row statistics; the packed partial gradients */
        size_t n = (size_t)rt->B * rt->T * (rt->C > PT_XENT_STATS * T ? rt->C : PT_XENT_STATS * T);
        red = n > red ? n : red;
        red = rt->tp_pack_n[0] > red ? rt->tp_pack_n[0] : red;
        red = rt->tp_pack_n[1] > red ? rt->tp_pack_n[1] : red;
    }
    pt_link_opts lo = { .comm = rt->comm, .be = rt->be, .compute = rt->stream, .msg_bytes = rt_msg_bytes(rt),
                        .n_send_bufs = rt->cap_sends, .n_recv_ids = rt->n_acts, .n_recv_bufs = n_recv,
                        .red_floats = red, .channels = chs, .n_channels = n_ch, .groups = grs, .n_groups = n_gr,
                        .timeout_ms = rt->timeout_ms,
                        /* a boundary inside a split head carries fp32 row statistics after h */
                        .bf16_messages = rt->precision == PT_PRECISION_BF16 && pt_model_head_layers(rt->cfg) == 1 };
    st = pt_link_create(&lo, &rt->link);
    if (st == PT_OK)
        rt->recv_in_order = pt_link_ordered_recvs(rt->link);
out:
    free(used);
    free(dp);
    free(tied);
    free(tpm);
    free(kvm);
    free(chs);
    free(grs);
    return st;
}

/* ---- create, phase by phase ---- */

/* The options, and the plan against the schedule and the job. */
static pt_status create_check(const pt_runtime_opts *o)
{
    if (!o || !o->cfg || !o->plan || !o->sched || !o->be || !o->stream)
        return pt_fail(PT_EINVAL, "pt_runtime_create: cfg, plan, schedule, backend and stream are required");
    const pt_plan *pl = o->plan;
    const pt_schedule *sc = o->sched;
    if (sc->n_ranks != pl->n_stages || sc->n_chunks != pl->n_chunks || sc->n_microbatches != pl->n_microbatches)
        return pt_fail(PT_EINVAL,
                       "schedule '%s' is for P=%d V=%d M=%d but the plan has P=%d V=%d M=%d; generate both from the "
                       "same settings",
                       sc->name, sc->n_ranks, sc->n_chunks, sc->n_microbatches, pl->n_stages, pl->n_chunks,
                       pl->n_microbatches);
    int world = o->comm ? pt_comm_size(o->comm) : 1, T = pl->n_tp > 1 ? pl->n_tp : 1;
    if (world != pl->n_stages * pl->n_replicas * T)
        return pt_fail(PT_EINVAL,
                       "the plan needs %d ranks (%d stages x %d replicas x %d tensor-parallel) but the job has %d; "
                       "start %d",
                       pl->n_stages * pl->n_replicas * T, pl->n_stages, pl->n_replicas, T, world,
                       pl->n_stages * pl->n_replicas * T);
    return pt_sched_validate(sc);
}

/* The settings, this rank's place in the job, and the plan's layers and predicted memory. */
static pt_status create_place(pt_runtime *rt, const pt_runtime_opts *o)
{
    const pt_plan *pl = o->plan;
    rt->cfg = o->cfg;
    rt->plan = pl;
    rt->sched = o->sched;
    rt->comm = o->comm;
    rt->be = o->be;
    rt->stream = o->stream;
    rt->adamw = o->adamw;
    rt->prof = o->profile;
    rt->precision = o->precision;
    rt->no_stash = o->no_stash != 0;
    rt->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : o->comm ? pt_comm_timeout_ms(o->comm) : 300000;
    rt->world = o->comm ? pt_comm_size(o->comm) : 1;
    rt->rank = o->comm ? pt_comm_rank(o->comm) : 0;
    rt->P = pl->n_stages;
    rt->V = pl->n_chunks;
    rt->D = pl->n_replicas;
    rt->M = pl->n_microbatches;
    rt->B = pl->micro_batch_size;
    rt->T = pl->seq_len;
    rt->C = o->cfg->n_embd;
    rt->ntp = pl->n_tp > 1 ? pl->n_tp : 1;
    rt->tpr = rt->rank % rt->ntp;
    rt->sp = rt->ntp > 1 && pl->sp;
    rt->p = rt->rank / rt->ntp % rt->P;
    rt->d = rt->rank / rt->ntp / rt->P;
    rt->rows = rt->B * rt->T / (rt->sp ? rt->ntp : 1);
    rt->tp_gi = rt->kv_gi = -1;
    if (rt->ntp > 1) {
        const int NKV = pt_model_kv_heads(o->cfg);
        rt->kv_n = NKV < rt->ntp ? rt->ntp / NKV : 0;
        PT_CHECK(pt_model_tp_check(o->cfg, rt->ntp, rt->sp, rt->B, rt->T));
        if (!o->comm)
            return pt_fail(PT_EINVAL, "tensor parallelism over %d ranks needs a job of several ranks", rt->ntp);
    }
    rt->zero = pl->zero && rt->D > 1; /* one replica: nothing to shard (train says so) */
    rt->emb_chunk = rt->head_chunk = -1;
    rt->tied_gi = rt->dp_gi = -1;
    rt->acts = o->sched->actions[rt->p];
    rt->n_acts = o->sched->n_actions[rt->p];
    rt->cur = -1;
    rt->dev_mem = o->be->device_memory;
    rt->mem_limit_bytes = o->mem_limit_bytes;
    int NV = rt->P * rt->V;
    int L = pt_model_n_layers(o->cfg);
    if (pl->n_vstages != NV || pl->first_layer[0] != 0 || pl->last_layer[NV - 1] != L - 1)
        return pt_fail(PT_EINVAL, "the plan's %d chunks do not cover layers 0..%d", pl->n_vstages, L - 1);
    if (o->mem_limit_bytes > 0 && pl->pred_rank_mem_bytes && pl->pred_rank_mem_bytes[rt->p] > 0 &&
        pl->pred_rank_mem_bytes[rt->p] > (double)o->mem_limit_bytes)
        return mem_refuse(rt, pl->pred_rank_mem_bytes[rt->p], "planner's prediction");
    return PT_OK;
}

/* The per-action and per-send bookkeeping of the list. */
static pt_status create_lists(pt_runtime *rt)
{
    rt->ch = calloc((size_t)rt->V, sizeof(*rt->ch));
    rt->recv_posted = calloc((size_t)rt->n_acts + 1, 1);
    rt->first_touch = calloc((size_t)rt->n_acts + 1, 1);
    rt->cap_sends = 1;
    for (int i = 0; i < rt->n_acts; i++)
        rt->cap_sends += rt->acts[i].kind == PT_ACT_SEND_ACT || rt->acts[i].kind == PT_ACT_SEND_GRAD;
    rt->sends = calloc((size_t)rt->cap_sends, sizeof(*rt->sends));
    rt->stage_free = calloc((size_t)rt->cap_sends, sizeof(int));
    rt->send_fence = calloc((size_t)rt->V, 1);
    if (!rt->ch || !rt->recv_posted || !rt->first_touch || !rt->sends || !rt->stage_free || !rt->send_fence)
        return pt_fail(PT_ENOMEM, "out of host memory for the runtime");
    return PT_OK;
}

/* Each local chunk's virtual stage, layers and neighbours; then the action list against them. */
static pt_status create_chunks(pt_runtime *rt)
{
    const pt_plan *pl = rt->plan;
    const pt_schedule *sc = rt->sched;
    int NV = rt->P * rt->V;
    for (int c = 0; c < rt->V; c++) {
        rt_chunk *k = &rt->ch[c];
        int v = pt_sched_vstage(sc, rt->p, c);
        k->vstage = v;
        k->first_layer = pl->first_layer[v];
        k->last_layer = pl->last_layer[v];
        k->has_emb = v == 0;
        k->has_head = v == NV - 1;
        k->has_hl = k->last_layer >= rt->cfg->n_layer + 1;
        rt->n_hl += k->has_hl;
        k->prev_local = k->next_local = -1;
        k->prev_rank = k->next_rank = -1;
        k->skip_tensor = -1;
        int r, cc;
        if (v > 0) {
            PT_CHECK(pt_sched_owner(sc, v - 1, &r, &cc));
            k->prev_rank = r;
            if (r == rt->p)
                k->prev_local = cc;
        }
        if (v < NV - 1) {
            PT_CHECK(pt_sched_owner(sc, v + 1, &r, &cc));
            k->next_rank = r;
            if (r == rt->p)
                k->next_local = cc;
        }
        if (k->has_emb)
            rt->emb_chunk = c;
        if (k->has_head)
            rt->head_chunk = c;
    }
    return check_actions(rt);
}

/* Slots per chunk: the peak of a dry run of the list. */
static pt_status create_slots(pt_runtime *rt)
{
    int peak[256];
    if (rt->V > 256)
        return pt_fail(PT_EINVAL, "%d chunks per rank is more than the 256 supported", rt->V);
    PT_CHECK(dry_run_slots(rt, peak));
    for (int c = 0; c < rt->V; c++)
        rt->ch[c].n_slots = peak[c];
    return PT_OK;
}

/* Each chunk's model (weights initialised from the seed), optimizer and slot maps. */
static pt_status create_models(pt_runtime *rt, const pt_runtime_opts *o)
{
    const pt_plan *pl = rt->plan;
    for (int c = 0; c < rt->V; c++) {
        rt_chunk *k = &rt->ch[c];
        /* A chunk whose actions never split its backward keeps no per-slot gradients between I
         * and W, and passes its external gradients in its activations' buffers (model.h): less
         * memory, same bits. Sends are staged and receives of gradients only land after this
         * rank's activation left, which is what that buffer sharing needs. */
        int split = 0;
        for (int i = 0; i < rt->n_acts; i++)
            split |= rt->acts[i].chunk == c &&
                     (rt->acts[i].kind == PT_ACT_BACKWARD_INPUT || rt->acts[i].kind == PT_ACT_BACKWARD_WEIGHT);
        pt_model_opts mo = { .micro_batch = rt->B, .seq_len = rt->T, .n_slots = k->n_slots,
                             .recompute = pl->recompute ? pl->recompute[k->vstage] : 0, .fused_only = !split,
                             .precision = rt->precision, .no_stash = rt->no_stash };
        if (rt->ntp > 1)
            mo.tp = (struct pt_model_tp){ .size = rt->ntp, .rank = rt->tpr, .sp = rt->sp, .allreduce = tp_allreduce,
                                          .reduce_scatter = tp_reduce_scatter, .allgather = tp_allgather, .ctx = rt };
        pt_status st = pt_model_create(o->cfg, k->first_layer, k->last_layer, &mo, o->be, o->stream, &k->m);
        if (st == PT_ENOMEM)
            return pt_fail_wrap(st, "rank %d (chunk %d, micro-batches of %d x %d tokens)", rt->rank, c, rt->B, rt->T);
        PT_CHECK(st);
        PT_CHECK(pt_model_init_weights(k->m, o->seed));
        if (rt->zero) {
            size_t lo, hi;
            chunk_segment(rt, c, &lo, &hi);
            PT_CHECK(pt_optim_create_range(k->m, &o->adamw, lo, hi, &k->o));
        } else {
            PT_CHECK(pt_optim_create(k->m, &o->adamw, &k->o));
        }
        k->slot_mb = malloc((size_t)k->n_slots * sizeof(int));
        k->mb_slot = malloc((size_t)rt->M * sizeof(int));
        k->bwd_done = calloc((size_t)rt->M, 1);
        k->dgrad_pend = calloc((size_t)rt->M, 1);
        if (!k->slot_mb || !k->mb_slot || !k->bwd_done || !k->dgrad_pend)
            return pt_fail(PT_ENOMEM, "out of host memory for slot maps");
        for (int s = 0; s < k->n_slots; s++)
            k->slot_mb[s] = -1;
        for (int mb = 0; mb < rt->M; mb++)
            k->mb_slot[mb] = -1;
        for (int i = 0; i < pt_model_n_tensors(k->m); i++) /* a tied / LM-head copy: counted once, as the original */
            if (pt_model_tensor_is_copy(k->m, pt_model_tensor(k->m, i)))
                k->skip_tensor = i;
        k->n_counted = pt_model_n_tensors(k->m) - (k->skip_tensor >= 0);
        rt->slot_bytes += (size_t)k->n_slots * pt_model_slot_bytes(k->m);
    }
    return PT_OK;
}

/* Global tensor order: counts per virtual stage from every rank of replica 0 (collective). The
 * same exchange counts the ranks sharding their optimizer state, which must be all or none. */
static pt_status create_tensor_order(pt_runtime *rt)
{
    int NV = rt->P * rt->V;
    double *cnt = calloc((size_t)NV + 1, sizeof(double));
    if (!cnt)
        return pt_fail(PT_ENOMEM, "out of host memory");
    pt_status st = PT_OK;
    if (rt->d == 0 && rt->tpr == 0) /* every tensor-parallel rank has the same table */
        for (int c = 0; c < rt->V; c++)
            cnt[rt->ch[c].vstage] = rt->ch[c].n_counted;
    cnt[NV] = rt->zero;
    if (rt->comm && rt->world > 1)
        st = pt_comm_allreduce_f64(rt->comm, NULL, cnt, (size_t)NV + 1, pt_deadline_after_ms(rt->timeout_ms));
    int n_zero = (int)cnt[NV];
    if (st == PT_OK && n_zero != 0 && n_zero != rt->world) {
        free(cnt);
        return pt_fail(PT_EINVAL,
                       "rank %d: %d of the job's %d ranks shard the optimizer (--zero 1) and the others do not; "
                       "give every rank the same --zero",
                       rt->rank, n_zero, rt->world);
    }
    if (st == PT_OK) {
        int g = 0;
        for (int v = 0; v < NV; v++) {
            for (int c = 0; c < rt->V; c++)
                if (rt->ch[c].vstage == v)
                    rt->ch[c].global_tensor0 = g;
            g += (int)cnt[v];
        }
        rt->n_global_tensors = g;
        rt->n_norm = g * rt->D * rt->ntp;
    }
    free(cnt);
    if (st != PT_OK)
        return pt_fail_wrap(st, "rank %d: exchanging tensor counts at start-up failed", rt->rank);
    return PT_OK;
}

/* The gradient-norm buffers, and the host batch where this rank needs tokens or targets. */
static pt_status create_batch(pt_runtime *rt)
{
    int max_t = 1;
    for (int c = 0; c < rt->V; c++)
        if (pt_model_n_tensors(rt->ch[c].m) > max_t)
            max_t = pt_model_n_tensors(rt->ch[c].m);
    rt->sumsq = calloc((size_t)max_t, sizeof(double));
    rt->norm_buf = calloc((size_t)rt->n_norm + 2, sizeof(double));
    if (rt->emb_chunk >= 0 || rt->n_hl > 0) {
        size_t n = (size_t)rt->M * rt->B * rt->T;
        rt->tokens = malloc(n * sizeof(int32_t));
        rt->targets = malloc(n * sizeof(int32_t));
        rt->scratch_tok = malloc((size_t)rt->B * rt->T * sizeof(int32_t));
        rt->scratch_tgt = malloc((size_t)rt->B * rt->T * sizeof(int32_t));
        if (!rt->tokens || !rt->targets || !rt->scratch_tok || !rt->scratch_tgt)
            return pt_fail(PT_ENOMEM, "out of host memory for the batch");
    }
    if (!rt->sumsq || !rt->norm_buf)
        return pt_fail(PT_ENOMEM, "out of host memory");
    return PT_OK;
}

/* The ranks of a tensor-parallel group split the same layers of the same model: each puts a hash of
 * its model config (the JSON the checkpoints write) at its index, the group sums, and every rank
 * compares (collective over the group). */
static pt_status tp_check_same_model(pt_runtime *rt)
{
    cJSON *j = pt_model_config_to_json(rt->cfg);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    double *h = calloc((size_t)rt->ntp, sizeof(double));
    if (!text || !h) {
        free(text);
        free(h);
        return pt_fail(PT_ENOMEM, "out of host memory");
    }
    uint64_t x = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        x = (x ^ *p) * 1099511628211ull;
    free(text);
    h[rt->tpr] = (double)(x >> 12); /* exact in a double */
    pt_status st = pt_comm_allreduce_f64(rt->comm, rt->tp_group, h, (size_t)rt->ntp, pt_deadline_after_ms(rt->timeout_ms));
    for (int t = 0; st == PT_OK && t < rt->ntp; t++)
        if (h[t] != h[rt->tpr])
            st = pt_fail(PT_EINVAL,
                         "rank %d: rank %d of its tensor-parallel group (ranks %d..%d) has another model config than "
                         "%s; start every rank with the same --model",
                         rt->rank, world_at(rt, rt->d, rt->p, t), world_at(rt, rt->d, rt->p, 0),
                         world_at(rt, rt->d, rt->p, rt->ntp - 1), rt->cfg->name[0] ? rt->cfg->name : "this rank's");
    free(h);
    return st;
}

/* The tied group: the pipeline ranks owning the embedding's or a head layer's vstage (from the
 * plan, so the same ascending list on every rank), as this replica's world ranks; then the
 * data-parallel group. Created by their members in the same order on every rank (collective). */
static pt_status create_groups(pt_runtime *rt)
{
    const pt_plan *pl = rt->plan;
    int NV = rt->P * rt->V;
    pt_status st = PT_OK;
    rt->tied_ranks = calloc((size_t)rt->P, sizeof(int));
    unsigned char *holds = calloc((size_t)rt->P, 1);
    int *members = malloc((size_t)rt->P * sizeof(int)), in_tied = 0;
    for (int v = 0; v < NV && st == PT_OK && holds; v++) {
        int r, cc;
        st = pt_sched_owner(rt->sched, v, &r, &cc);
        if (st == PT_OK && ((v == 0 && pt_model_tied(rt->cfg)) || pl->last_layer[v] >= rt->cfg->n_layer + 1))
            holds[r] = 1;
    }
    if (st == PT_OK && (!rt->tied_ranks || !holds || !members))
        st = pt_fail(PT_ENOMEM, "out of host memory");
    for (int q = 0; q < rt->P && st == PT_OK; q++)
        if (holds[q]) {
            in_tied |= q == rt->p;
            members[rt->n_tied] = world_of(rt, q);
            rt->tied_ranks[rt->n_tied++] = q;
        }
    if (st == PT_OK && rt->comm && rt->n_tied > 1 && in_tied)
        st = pt_comm_group_create(rt->comm, members, rt->n_tied, &rt->tied_group);
    free(holds);
    free(members);
    if (st != PT_OK || !rt->comm)
        return st;
    const int n = rt->D > rt->ntp ? rt->D : rt->ntp;
    int *g = malloc((size_t)n * sizeof(int));
    if (!g)
        return pt_fail(PT_ENOMEM, "out of host memory");
    for (int d = 0; d < rt->D; d++)
        g[d] = world_at(rt, d, rt->p, rt->tpr);
    if (rt->D > 1)
        st = pt_comm_group_create(rt->comm, g, rt->D, &rt->dp_group);
    for (int t = 0; t < rt->ntp; t++)
        g[t] = world_at(rt, rt->d, rt->p, t);
    if (st == PT_OK && rt->ntp > 1)
        st = pt_comm_group_create(rt->comm, g, rt->ntp, &rt->tp_group);
    if (st == PT_OK && rt->kv_n > 1) { /* the ranks sharing this rank's kv head */
        const int h0 = rt->tpr / rt->kv_n * rt->kv_n;
        st = pt_comm_group_create(rt->comm, g + h0, rt->kv_n, &rt->kv_group);
    }
    free(g);
    if (st == PT_OK && rt->ntp > 1)
        st = tp_check_same_model(rt);
    if (st == PT_OK && rt->ntp > 1) /* the packs of the partial gradients (sizes first) */
        for (int q = 0; q < 2 && st == PT_OK; q++) {
            st = tp_pack_walk(rt, q, 0);
            if (st == PT_OK && rt->tp_pack_n[q] > 0)
                st = pt_backend_alloc_kind(rt->be, &rt->tp_pack[q], rt->tp_pack_n[q] * sizeof(float), PT_MEM_GRADS);
        }
    return st;
}

/* Several ranks: the link everything travels by (collective), once every rank has said it trains in
 * the same precision (the link's message format and the models' rounding depend on it). */
static pt_status create_link(pt_runtime *rt)
{
    if (!rt->comm || rt->world <= 1)
        return PT_OK;
    double n_bf16 = rt->precision == PT_PRECISION_BF16;
    PT_CHECK(pt_comm_allreduce_f64(rt->comm, NULL, &n_bf16, 1, pt_deadline_after_ms(rt->timeout_ms)));
    if (n_bf16 != 0 && (int)n_bf16 != rt->world)
        return pt_fail(PT_EINVAL, "rank %d: %d of the job's %d ranks train in bf16 and the others in fp32; give every "
                                  "rank the same --precision",
                       rt->rank, (int)n_bf16, rt->world);
    return link_setup(rt);
}

/* --overlap: the engine (grad_sync.h) for this rank's data-parallel group. Every rank of a D > 1
 * job first says whether it overlaps (mixed settings refused, as for --zero); then each chunk's
 * gradients become buckets of whole layers (at least GS_BUCKET_FLOATS each where layers are
 * smaller) in the order the backward finishes them: chunks by their last weight pass in the list,
 * each chunk's layers from the last to the first; the ranges the tied reduction changes (the
 * embedding's tied wte, a head matrix held in the flat gradients) are buckets of their own, last.
 * The order depends only on the stage's chunks and action list, so every replica has the same. */
#define GS_BUCKET_FLOATS ((size_t)1 << 20)
/* Buckets are at most this many floats (16 MiB): a larger layer or tensor is several, which bounds
 * the engine's staging buffer (grad_sync.h). */
#define GS_BUCKET_MAX_FLOATS ((size_t)4 << 20)
static pt_status gs_add_split(pt_runtime *rt, int c, size_t lo, size_t hi)
{
    while (hi > lo) { /* from the top: the backward's order within a range does not matter */
        size_t a = hi - lo > GS_BUCKET_MAX_FLOATS ? hi - GS_BUCKET_MAX_FLOATS : lo;
        PT_CHECK(pt_grad_sync_add_bucket(rt->gs, c, a, hi));
        hi = a;
    }
    return PT_OK;
}

static pt_status create_overlap(pt_runtime *rt, const pt_runtime_opts *o)
{
    rt->gs_live = -1;
    if (!rt->comm || rt->world <= 1 || rt->D <= 1)
        return PT_OK;
    double flag = o->overlap != 0;
    PT_CHECK(pt_comm_allreduce_f64(rt->comm, NULL, &flag, 1, pt_deadline_after_ms(rt->timeout_ms)));
    if (flag != 0 && (int)flag != rt->world)
        return pt_fail(PT_EINVAL, "rank %d: %d of the job's %d ranks overlap the gradient reduction with the backward "
                                  "(--overlap 1) and the others do not; give every rank the same --overlap",
                       rt->rank, (int)flag, rt->world);
    if (flag == 0)
        return PT_OK;
    if (rt->dev_mem)
        return pt_fail(PT_ENOTSUP, "rank %d: --overlap 1 reduces gradients in host memory while the backward runs, "
                                   "and backend %s keeps them in device memory (the side-stream version is not built); "
                                   "use --overlap 0",
                       rt->rank, rt->be->name);
    rt->gs_hooks = calloc((size_t)rt->V, sizeof *rt->gs_hooks);
    rt->gs_last_wpass = malloc((size_t)rt->V * sizeof(int));
    rt->gs_defer = calloc((size_t)rt->V * 4, sizeof(size_t));
    int *g = malloc((size_t)rt->D * sizeof(int)), *order = malloc((size_t)rt->V * sizeof(int));
    pt_status st = PT_OK;
    if (!rt->gs_hooks || !rt->gs_last_wpass || !rt->gs_defer || !g || !order) {
        st = pt_fail(PT_ENOMEM, "out of host memory");
        goto out;
    }
    for (int c = 0; c < rt->V; c++)
        rt->gs_last_wpass[c] = -1;
    for (int i = 0; i < rt->n_acts; i++) {
        const pt_action *a = &rt->acts[i];
        if ((a->kind == PT_ACT_BACKWARD || a->kind == PT_ACT_BACKWARD_WEIGHT) && a->chunk >= 0 && a->chunk < rt->V)
            rt->gs_last_wpass[a->chunk] = i;
    }
    for (int d = 0; d < rt->D; d++)
        g[d] = world_at(rt, d, rt->p, rt->tpr);
    pt_grad_sync_opts go = { .zero = rt->zero, .timeout_ms = rt->timeout_ms };
    PT_TRY(pt_grad_sync_create(rt->comm, g, rt->D, &go, &rt->gs), out);
    for (int c = 0; c < rt->V; c++) {
        pt_model *m = rt->ch[c].m;
        float *gr = pt_model_grads(m), *twin = pt_model_head_wte_grad(m);
        size_t n = pt_model_n_params(m);
        if (c == rt->emb_chunk && pt_model_tied(rt->cfg)) {
            const pt_param *w = pt_model_find_tensor(m, "wte.weight");
            rt->gs_defer[4 * c] = w->offset;
            rt->gs_defer[4 * c + 1] = w->offset + w->numel;
        }
        /* a head matrix in the flat gradients changes at REDUCE_GRADS when reduce_tied sums it: tied, or
         * an untied lm_head held by several chunks (copies) */
        int twin_summed = pt_model_tied(rt->cfg) || rt->n_hl > 1 || rt->tied_group;
        if (twin && twin >= gr && twin < gr + n && twin_summed) {
            rt->gs_defer[4 * c + 2] = (size_t)(twin - gr);
            rt->gs_defer[4 * c + 3] = (size_t)(twin - gr) + (size_t)pt_model_vocab_rows(m) * rt->cfg->n_embd;
        }
        PT_TRY(pt_grad_sync_add_chunk(rt->gs, c, gr, n), out);
        order[c] = c;
    }
    for (int i = 1; i < rt->V; i++) /* chunks by their last weight pass */
        for (int j = i; j > 0 && rt->gs_last_wpass[order[j]] < rt->gs_last_wpass[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int q = 0; q < rt->V; q++) {
        int c = order[q];
        pt_model *m = rt->ch[c].m;
        const size_t *df = rt->gs_defer + 4 * c;
        size_t blo = 0, bhi = 0;
        int blayer = -1;
        for (int t = pt_model_n_tensors(m) - 1; t >= 0; t--) {
            const pt_param *pr = pt_model_tensor(m, t);
            size_t lo = pr->offset, hi = pr->offset + pr->numel;
            if ((df[0] < df[1] && lo >= df[0] && hi <= df[1]) || (df[2] < df[3] && lo >= df[2] && hi <= df[3]))
                continue; /* a deferred range: its own bucket below */
            if (bhi > blo && lo + (hi - lo) == blo && (pr->layer == blayer || bhi - blo < GS_BUCKET_FLOATS)) {
                blo = lo;
                blayer = pr->layer;
                continue;
            }
            if (bhi > blo)
                PT_TRY(gs_add_split(rt, c, blo, bhi), out);
            blo = lo;
            bhi = hi;
            blayer = pr->layer;
        }
        if (bhi > blo)
            PT_TRY(gs_add_split(rt, c, blo, bhi), out);
    }
    for (int c = 0; c < rt->V; c++)
        for (int d = 0; d < 2; d++)
            if (rt->gs_defer[4 * c + 2 * d] < rt->gs_defer[4 * c + 2 * d + 1])
                PT_TRY(gs_add_split(rt, c, rt->gs_defer[4 * c + 2 * d], rt->gs_defer[4 * c + 2 * d + 1]), out);
    PT_TRY(pt_grad_sync_start(rt->gs), out);
    for (int c = 0; c < rt->V; c++) {
        rt->gs_hooks[c] = (rt_gs_hook){ .rt = rt, .chunk = c };
        pt_model_set_grad_hook(rt->ch[c].m, gs_hook, &rt->gs_hooks[c]);
    }
out:
    free(g);
    free(order);
    if (st != PT_OK)
        return pt_fail_wrap(st, "rank %d: setting up --overlap", rt->rank);
    return PT_OK;
}

/* What create allocated on the backend, against --mem-limit. */
static pt_status create_measure(pt_runtime *rt, size_t bytes0)
{
    PT_CHECK(rt->be->stream_sync(rt->stream));
    rt->alloc_bytes = pt_backend_bytes_in_use() - bytes0;
    if (rt->mem_limit_bytes > 0 && rt->alloc_bytes > rt->mem_limit_bytes)
        return mem_refuse(rt, (double)rt->alloc_bytes, "parameters, gradients, optimizer state and activation slots");
    return PT_OK;
}

pt_status pt_runtime_create(const pt_runtime_opts *o, pt_runtime **out)
{
    *out = NULL;
    PT_CHECK(create_check(o));
    pt_runtime *rt = calloc(1, sizeof(*rt));
    if (!rt)
        return pt_fail(PT_ENOMEM, "out of host memory for the runtime");
    size_t bytes0 = pt_backend_bytes_in_use();
    pt_status st = PT_OK;
    PT_TRY(create_place(rt, o), fail);
    PT_TRY(create_lists(rt), fail);
    PT_TRY(create_chunks(rt), fail);
    PT_TRY(create_slots(rt), fail);
    PT_TRY(create_models(rt, o), fail);
    PT_TRY(create_tensor_order(rt), fail);
    PT_TRY(create_batch(rt), fail);
    PT_TRY(create_groups(rt), fail);
    PT_TRY(create_link(rt), fail);
    PT_TRY(create_overlap(rt, o), fail);
    PT_TRY(create_measure(rt, bytes0), fail);
    *out = rt;
    return PT_OK;
fail:
    pt_runtime_destroy(rt);
    return st;
}

void pt_runtime_destroy(pt_runtime *rt)
{
    if (!rt)
        return;
    pt_grad_sync_destroy(rt->gs); /* before the models: its thread may still read their gradients */
    for (int i = 0; i < rt->n_mk; i++)
        rt->be->marker_destroy(rt->mk[i]);
    free(rt->mk);
    free(rt->pend);
    free(rt->gs_hooks);
    free(rt->gs_last_wpass);
    free(rt->gs_defer);
    pt_link_destroy(rt->link, rt->failed);
    pt_comm_group_destroy(rt->dp_group);
    pt_comm_group_destroy(rt->tied_group);
    pt_comm_group_destroy(rt->tp_group);
    pt_comm_group_destroy(rt->kv_group);
    for (int q = 0; q < 2; q++)
        pt_backend_free(rt->be, rt->tp_pack[q]);
    free(rt->tied_ranks);
    free(rt->tokens);
    free(rt->targets);
    free(rt->scratch_tok);
    free(rt->scratch_tgt);
    free(rt->norm_buf);
    free(rt->sumsq);
    for (int c = 0; rt->ch && c < rt->V; c++) {
        rt_chunk *k = &rt->ch[c];
        pt_optim_destroy(k->o);
        pt_model_destroy(k->m);
        free(k->slot_mb);
        free(k->mb_slot);
        free(k->bwd_done);
        free(k->dgrad_pend);
    }
    free(rt->ch);
    free(rt->send_fence);
    free(rt->stage_free);
    free(rt->sends);
    free(rt->first_touch);
    free(rt->ev_pred);
    free(rt->recv_posted);
    free(rt);
}

/* ---- queries ---- */

int pt_runtime_rank(const pt_runtime *rt) { return rt->rank; }
int pt_runtime_stage_rank(const pt_runtime *rt) { return rt->p; }
int pt_runtime_replica(const pt_runtime *rt) { return rt->d; }
int pt_runtime_tp_rank(const pt_runtime *rt) { return rt->tpr; }
int pt_runtime_tp_size(const pt_runtime *rt) { return rt->ntp; }
int pt_runtime_n_chunks(const pt_runtime *rt) { return rt->V; }
int pt_runtime_chunk_vstage(const pt_runtime *rt, int c) { return rt->ch[c].vstage; }
pt_model *pt_runtime_chunk_model(pt_runtime *rt, int c) { return rt->ch[c].m; }
pt_optim *pt_runtime_chunk_optim(pt_runtime *rt, int c) { return rt->ch[c].o; }
int pt_runtime_chunk_slots(const pt_runtime *rt, int c) { return rt->ch[c].n_slots; }
int pt_runtime_chunk_peak_inflight(const pt_runtime *rt, int c) { return rt->ch[c].peak_in_use; }
size_t pt_runtime_peak_bytes(const pt_runtime *rt) { return rt->alloc_bytes; }
size_t pt_runtime_slot_bytes(const pt_runtime *rt) { return rt->slot_bytes; }

const char *pt_runtime_transfer_path(const pt_runtime *rt)
{
    if (rt->link)
        return pt_link_describe(rt->link);
    if (!rt->dev_mem)
        return "host memory (the backend computes in host memory)";
    return "none (one rank: nothing travels between ranks)";
}
