/* The lowering pass (pt_sched_lower): from a compute-only schedule (F, B, I, W per rank) to a
 * runnable one. It inserts the sends and receives that the stage map implies, each receive just
 * before its consumer and in its link's send order, and AR + STEP at the end of every list. The
 * generators (generate.c) and the CSV reader (csv.c) both end with it, so a generator or a
 * hand-written order cannot get communication wrong. */
#include <stdlib.h>
#include <string.h>

#include "pipetrain/schedule.h"
#include "sched_internal.h"

/* One directed link into a rank: messages of one kind from one source, in send order. */
typedef struct in_link {
    int src, kind; /* kind: 0 activations, 1 gradients */
    int *pairs;    /* receiver's (mb * V + chunk) per message */
    int n, cap, next_recv;
} in_link;

typedef struct lower_ctx {
    const pt_schedule *s;
    in_link **links; /* [rank] */
    int *n_links;    /* [rank] */
    int *pos;        /* [(kind * P + rank) * V*M + pair] position of that message in its link, -1: none */
    int *owner_rank, *owner_chunk; /* [vstage] */
} lower_ctx;

static in_link *find_link(lower_ctx *x, int dst, int src, int kind, int create)
{
    for (int i = 0; i < x->n_links[dst]; i++)
        if (x->links[dst][i].src == src && x->links[dst][i].kind == kind)
            return &x->links[dst][i];
    if (!create)
        return NULL;
    in_link *l = realloc(x->links[dst], (size_t)(x->n_links[dst] + 1) * sizeof *l);
    if (!l)
        return NULL;
    x->links[dst] = l;
    l = &l[x->n_links[dst]++];
    memset(l, 0, sizeof *l);
    l->src = src;
    l->kind = kind;
    return l;
}

static pt_status push_msg(lower_ctx *x, int dst, int src, int kind, int pair)
{
    in_link *l = find_link(x, dst, src, kind, 1);
    if (!l)
        return pt_fail(PT_ENOMEM, "schedule lowering: out of memory");
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        int *p = realloc(l->pairs, (size_t)cap * sizeof *p);
        if (!p)
            return pt_fail(PT_ENOMEM, "schedule lowering: out of memory");
        l->pairs = p;
        l->cap = cap;
    }
    const pt_schedule *s = x->s;
    size_t VM = (size_t)s->n_chunks * s->n_microbatches;
    x->pos[((size_t)kind * s->n_ranks + dst) * VM + pair] = l->n;
    l->pairs[l->n++] = pair;
    return PT_OK;
}

/* Emits receives on link (dst <- src, kind) up to and including message `pair`, in send order,
 * so receives on a link keep the senders' order even when the consumer needs them in another. */
static pt_status recv_through(lower_ctx *x, pt_schedule *out, int dst, int src, int kind, int pair)
{
    const pt_schedule *s = x->s;
    size_t VM = (size_t)s->n_chunks * s->n_microbatches;
    int want = x->pos[((size_t)kind * s->n_ranks + dst) * VM + pair];
    in_link *l = find_link(x, dst, src, kind, 0);
    if (!l || want < 0)
        return PT_OK; /* nobody sends it: the validator will name the missing producer */
    while (l->next_recv <= want) {
        int p = l->pairs[l->next_recv++];
        PT_CHECK(pt_sched_append(out, dst, (pt_action){ kind ? PT_ACT_RECV_GRAD : PT_ACT_RECV_ACT,
                                                        p / s->n_chunks, p % s->n_chunks, src }));
    }
    return PT_OK;
}

pt_status pt_sched_lower(const pt_schedule *s, pt_schedule **out)
{
    *out = NULL;
    int P = s->n_ranks, V = s->n_chunks, M = s->n_microbatches, S = P * V;
    size_t VM = (size_t)V * M;
    lower_ctx x = { .s = s };
    pt_schedule *o = NULL;
    pt_status st = PT_OK;
    x.links = calloc((size_t)P, sizeof *x.links);
    x.n_links = calloc((size_t)P, sizeof *x.n_links);
    x.pos = malloc(2 * (size_t)P * VM * sizeof *x.pos);
    x.owner_rank = malloc((size_t)S * sizeof *x.owner_rank);
    x.owner_chunk = malloc((size_t)S * sizeof *x.owner_chunk);
    if (!x.links || !x.n_links || !x.pos || !x.owner_rank || !x.owner_chunk) {
        st = pt_fail(PT_ENOMEM, "schedule lowering: out of memory for %d x %d x %d", P, V, M);
        goto done;
    }
    for (size_t k = 0; k < 2 * (size_t)P * VM; k++)
        x.pos[k] = -1;
    for (int k = 0; k < S; k++) {
        x.owner_rank[s->stage_of[k]] = k / V;
        x.owner_chunk[s->stage_of[k]] = k % V;
    }
    /* pass 1: every message, in its sender's order */
    for (int r = 0; r < P; r++)
        for (int i = 0; i < s->n_actions[r]; i++) {
            const pt_action *a = &s->actions[r][i];
            if (a->kind == PT_ACT_REDUCE_GRADS || a->kind == PT_ACT_OPTIMIZER_STEP)
                continue;
            if (!pt_action_is_compute(a->kind)) {
                st = pt_fail(PT_EINVAL, "schedule lowering: rank %d action %d is a %s; lowering takes compute "
                                        "actions only (F, B, I, W) and adds the communication itself",
                             r, i, pt_action_kind_name(a->kind));
                goto done;
            }
            if (a->microbatch < 0 || a->microbatch >= M || a->chunk < 0 || a->chunk >= V) {
                st = pt_fail(PT_EINVAL, "schedule lowering: rank %d action %d names micro-batch %d chunk %d, outside "
                                        "%d micro-batches x %d chunks",
                             r, i, a->microbatch, a->chunk, M, V);
                goto done;
            }
            int v = s->stage_of[r * V + a->chunk];
            if (a->kind == PT_ACT_FORWARD && v + 1 < S && x.owner_rank[v + 1] != r)
                PT_TRY(push_msg(&x, x.owner_rank[v + 1], r, 0, a->microbatch * V + x.owner_chunk[v + 1]), done);
            if ((a->kind == PT_ACT_BACKWARD || a->kind == PT_ACT_BACKWARD_INPUT) && v > 0 && x.owner_rank[v - 1] != r)
                PT_TRY(push_msg(&x, x.owner_rank[v - 1], r, 1, a->microbatch * V + x.owner_chunk[v - 1]), done);
        }
    /* pass 2: the lists with receives before consumers and sends after producers */
    PT_TRY(pt_sched_create(s->name, P, V, M, s->stage_of, &o), done);
    for (int r = 0; r < P; r++) {
        for (int i = 0; i < s->n_actions[r]; i++) {
            const pt_action *a = &s->actions[r][i];
            if (!pt_action_is_compute(a->kind))
                continue;
            int v = s->stage_of[r * V + a->chunk];
            int pair = a->microbatch * V + a->chunk;
            int is_bwd = a->kind == PT_ACT_BACKWARD || a->kind == PT_ACT_BACKWARD_INPUT;
            if (a->kind == PT_ACT_FORWARD && v > 0 && x.owner_rank[v - 1] != r)
                PT_TRY(recv_through(&x, o, r, x.owner_rank[v - 1], 0, pair), done);
            if (is_bwd && v + 1 < S && x.owner_rank[v + 1] != r)
                PT_TRY(recv_through(&x, o, r, x.owner_rank[v + 1], 1, pair), done);
            PT_TRY(pt_sched_add(o, r, a->kind, a->microbatch, a->chunk), done);
            if (a->kind == PT_ACT_FORWARD && v + 1 < S && x.owner_rank[v + 1] != r)
                PT_TRY(pt_sched_append(o, r, (pt_action){ PT_ACT_SEND_ACT, a->microbatch, a->chunk, x.owner_rank[v + 1] }),
                       done);
            if (is_bwd && v > 0 && x.owner_rank[v - 1] != r)
                PT_TRY(pt_sched_append(o, r, (pt_action){ PT_ACT_SEND_GRAD, a->microbatch, a->chunk, x.owner_rank[v - 1] }),
                       done);
        }
        /* messages no compute consumed (an incomplete input): receive them so links stay paired */
        for (int l = 0; l < x.n_links[r]; l++) {
            in_link *L = &x.links[r][l];
            if (L->n > 0)
                PT_TRY(recv_through(&x, o, r, L->src, L->kind, L->pairs[L->n - 1]), done);
        }
        PT_TRY(pt_sched_add(o, r, PT_ACT_REDUCE_GRADS, -1, -1), done);
        PT_TRY(pt_sched_add(o, r, PT_ACT_OPTIMIZER_STEP, -1, -1), done);
    }
    *out = o;
    o = NULL;
done:
    pt_sched_destroy(o);
    if (x.links)
        for (int r = 0; r < P; r++) {
            for (int l = 0; l < x.n_links[r]; l++)
                free(x.links[r][l].pairs);
            free(x.links[r]);
        }
    free(x.links);
    free(x.n_links);
    free(x.pos);
    free(x.owner_rank);
    free(x.owner_chunk);
    return st;
}
