/* The validator: every rule a rank relies on when it runs its list, checked before anything
 * runs. Rules, in the order they are checked (the first broken one is reported):
 *   1. fields in range (kind, micro-batch, chunk, peer; a peer is another rank);
 *   2. per rank, in list order: a backward after its forward, a W after its I, no B mixed with
 *      I/W for one (micro-batch, chunk), nothing run twice; a stage's input is received (other
 *      rank) or computed earlier (same rank) before the forward/backward that needs it; a send
 *      after the compute producing it and to the rank holding the neighbour stage;
 *   3. every (micro-batch, chunk) has its forward and its backward (B, or I and W);
 *   4. AR then STEP close every rank's list;
 *   5. on every link (sender, receiver, activation or gradient) the k-th send matches the k-th
 *      receive in micro-batch and stage, and the counts agree;
 *   6. no deadlock when run with buffered sends and blocking receives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/schedule.h"
#include "sched_internal.h"

#define VFAIL(s, r, i, ...) vfail((s), (r), (i), __VA_ARGS__)

static pt_status __attribute__((format(printf, 4, 5))) vfail(const pt_schedule *s, int r, int i, const char *fmt, ...)
{
    char msg[768], tok[48] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (i >= 0 && i < s->n_actions[r])
        pt_action_format(&s->actions[r][i], tok, sizeof tok);
    if (tok[0])
        return pt_fail(PT_EINVAL, "schedule %s: rank %d action %d (%s): %s", s->name, r, i, tok, msg);
    return pt_fail(PT_EINVAL, "schedule %s: rank %d: %s", s->name, r, msg);
}

/* A send or receive, for pairing on links. */
typedef struct comm_ref {
    int src, dst, kind; /* kind 0: activation, 1: gradient */
    int rank, index;    /* where it sits */
    int stage;          /* sender: producing stage; receiver: consuming stage */
    int mb;
} comm_ref;

static int cmp_link(const comm_ref *a, const comm_ref *b);

static int cmp_ref(const void *pa, const void *pb)
{
    const comm_ref *a = pa, *b = pb;
    int l = cmp_link(a, b);
    if (l)
        return l;
    /* within a link: program order on the rank that holds them (one rank per list) */
    return (a->index > b->index) - (a->index < b->index);
}

/* Orders links only (sender, receiver, kind). */
static int cmp_link(const comm_ref *a, const comm_ref *b)
{
    if (a->src != b->src)
        return a->src < b->src ? -1 : 1;
    if (a->dst != b->dst)
        return a->dst < b->dst ? -1 : 1;
    return (a->kind > b->kind) - (a->kind < b->kind);
}

static int comm_kind(pt_action_kind k)
{
    return (k == PT_ACT_SEND_GRAD || k == PT_ACT_RECV_GRAD) ? 1 : 0;
}

/* Rule 1. */
static pt_status check_fields(const pt_schedule *s)
{
    int P = s->n_ranks, V = s->n_chunks, M = s->n_microbatches;
    for (int r = 0; r < P; r++)
        for (int i = 0; i < s->n_actions[r]; i++) {
            const pt_action *a = &s->actions[r][i];
            if ((unsigned)a->kind >= PT_ACT_KIND_COUNT)
                return VFAIL(s, r, i, "unknown action kind %d", (int)a->kind);
            if (a->kind == PT_ACT_REDUCE_GRADS || a->kind == PT_ACT_OPTIMIZER_STEP)
                continue;
            if (a->microbatch < 0 || a->microbatch >= M)
                return VFAIL(s, r, i, "micro-batch %d is outside 0..%d", a->microbatch, M - 1);
            if (a->chunk < 0 || a->chunk >= V)
                return VFAIL(s, r, i, "chunk %d is outside 0..%d", a->chunk, V - 1);
            if (!pt_action_is_compute(a->kind)) {
                if (a->peer < 0 || a->peer >= P)
                    return VFAIL(s, r, i, "peer rank %d is outside 0..%d", a->peer, P - 1);
                if (a->peer == r)
                    return VFAIL(s, r, i, "sends or receives to itself; stages on one rank hand data over "
                                          "without communication");
            }
        }
    return PT_OK;
}

enum { SEEN_F = 1, SEEN_B = 2, SEEN_I = 4, SEEN_W = 8, SEEN_RA = 16, SEEN_RG = 32, SEEN_SA = 64, SEEN_SG = 128 };

/* Rules 2-4 for rank r. seen: [V*M] scratch. owner_*: [vstage]. */
static pt_status check_rank(const pt_schedule *s, int r, unsigned char *seen, const int *owner_rank,
                            const int *owner_chunk)
{
    int V = s->n_chunks, M = s->n_microbatches, S = s->n_ranks * V;
    memset(seen, 0, (size_t)V * M);
    int n = s->n_actions[r];
    int ar_at = -1, step_at = -1;
    for (int i = 0; i < n; i++) {
        const pt_action *a = &s->actions[r][i];
        if (a->kind == PT_ACT_REDUCE_GRADS) {
            if (ar_at >= 0)
                return VFAIL(s, r, i, "a second AR (the first is action %d); reduce gradients once per step", ar_at);
            ar_at = i;
            continue;
        }
        if (a->kind == PT_ACT_OPTIMIZER_STEP) {
            if (step_at >= 0)
                return VFAIL(s, r, i, "a second STEP (the first is action %d)", step_at);
            if (ar_at < 0)
                return VFAIL(s, r, i, "STEP before AR; reduce gradients (AR) before the optimizer step");
            step_at = i;
            continue;
        }
        if (ar_at >= 0)
            return VFAIL(s, r, i, "comes after AR (action %d); AR and STEP must close the rank's list", ar_at);
        int m = a->microbatch, c = a->chunk, v = s->stage_of[r * V + c];
        unsigned char *f = &seen[pt_sched_pair(s, m, c)];
        int prev_rank = v > 0 ? owner_rank[v - 1] : -1, next_rank = v + 1 < S ? owner_rank[v + 1] : -1;
        switch (a->kind) {
        case PT_ACT_FORWARD:
            if (*f & SEEN_F)
                return VFAIL(s, r, i, "micro-batch %d chunk %d runs its forward twice", m, c);
            if (v > 0) {
                if (prev_rank == r) {
                    if (!(seen[pt_sched_pair(s, m, owner_chunk[v - 1])] & SEEN_F))
                        return VFAIL(s, r, i, "forward of stage %d before the forward of stage %d (chunk %d) on this "
                                              "rank produced its input",
                                     v, v - 1, owner_chunk[v - 1]);
                } else if (!(*f & SEEN_RA)) {
                    return VFAIL(s, r, i, "forward before its input activation is received; put RA%d.%d<%d before it",
                                 m, c, prev_rank);
                }
            }
            *f |= SEEN_F;
            break;
        case PT_ACT_BACKWARD:
        case PT_ACT_BACKWARD_INPUT: {
            const char *what = a->kind == PT_ACT_BACKWARD ? "backward" : "backward-input";
            if (!(*f & SEEN_F))
                return VFAIL(s, r, i, "%s before its forward", what);
            if (*f & (SEEN_B | SEEN_I))
                return VFAIL(s, r, i, "micro-batch %d chunk %d runs its backward twice (B or I already ran)", m, c);
            if (a->kind == PT_ACT_BACKWARD && (*f & SEEN_W))
                return VFAIL(s, r, i, "B after a W of the same micro-batch and chunk; use B alone or I then W");
            if (v + 1 < S) {
                if (next_rank == r) {
                    if (!(seen[pt_sched_pair(s, m, owner_chunk[v + 1])] & (SEEN_B | SEEN_I)))
                        return VFAIL(s, r, i, "%s of stage %d before the backward of stage %d (chunk %d) on this "
                                              "rank produced its gradient",
                                     what, v, v + 1, owner_chunk[v + 1]);
                } else if (!(*f & SEEN_RG)) {
                    return VFAIL(s, r, i, "%s before its output gradient is received; put RG%d.%d<%d before it", what,
                                 m, c, next_rank);
                }
            }
            *f |= a->kind == PT_ACT_BACKWARD ? SEEN_B : SEEN_I;
            break;
        }
        case PT_ACT_BACKWARD_WEIGHT:
            if (*f & SEEN_W)
                return VFAIL(s, r, i, "micro-batch %d chunk %d runs its weight-gradient twice", m, c);
            if (*f & SEEN_B)
                return VFAIL(s, r, i, "W after a fused B of the same micro-batch and chunk; use B alone or I then W");
            if (!(*f & SEEN_I))
                return VFAIL(s, r, i, "weight-gradient before its input-gradient; run I%d.%d first", m, c);
            *f |= SEEN_W;
            break;
        case PT_ACT_SEND_ACT:
            if (v + 1 >= S)
                return VFAIL(s, r, i, "stage %d is the last stage; its output goes nowhere", v);
            if (a->peer != next_rank)
                return VFAIL(s, r, i, "sends to rank %d, but stage %d lives on rank %d", a->peer, v + 1, next_rank);
            if (!(*f & SEEN_F))
                return VFAIL(s, r, i, "sends an activation before the forward that produces it");
            if (*f & SEEN_SA)
                return VFAIL(s, r, i, "sends the same activation twice");
            *f |= SEEN_SA;
            break;
        case PT_ACT_SEND_GRAD:
            if (v == 0)
                return VFAIL(s, r, i, "stage 0 is the first stage; its input gradient goes nowhere");
            if (a->peer != prev_rank)
                return VFAIL(s, r, i, "sends to rank %d, but stage %d lives on rank %d", a->peer, v - 1, prev_rank);
            if (!(*f & (SEEN_B | SEEN_I)))
                return VFAIL(s, r, i, "sends a gradient before the backward that produces it");
            if (*f & SEEN_SG)
                return VFAIL(s, r, i, "sends the same gradient twice");
            *f |= SEEN_SG;
            break;
        case PT_ACT_RECV_ACT:
            if (v == 0)
                return VFAIL(s, r, i, "stage 0 takes its input from the data, not from another rank");
            if (a->peer != prev_rank)
                return VFAIL(s, r, i, "receives from rank %d, but the stage before (%d) lives on rank %d", a->peer,
                             v - 1, prev_rank);
            if (*f & SEEN_RA)
                return VFAIL(s, r, i, "receives the same activation twice");
            *f |= SEEN_RA;
            break;
        case PT_ACT_RECV_GRAD:
            if (v + 1 >= S)
                return VFAIL(s, r, i, "the last stage makes its own gradient from the loss; nothing to receive");
            if (a->peer != next_rank)
                return VFAIL(s, r, i, "receives from rank %d, but the stage after (%d) lives on rank %d", a->peer,
                             v + 1, next_rank);
            if (*f & SEEN_RG)
                return VFAIL(s, r, i, "receives the same gradient twice");
            *f |= SEEN_RG;
            break;
        case PT_ACT_REDUCE_GRADS:
        case PT_ACT_OPTIMIZER_STEP:
        case PT_ACT_KIND_COUNT:
            break;
        }
    }
    for (int m = 0; m < M; m++)
        for (int c = 0; c < V; c++) {
            unsigned f = seen[pt_sched_pair(s, m, c)];
            if (!(f & SEEN_F))
                return VFAIL(s, r, -1, "micro-batch %d chunk %d (stage %d) is missing its forward", m, c,
                             s->stage_of[r * V + c]);
            if (!(f & (SEEN_B | SEEN_I)))
                return VFAIL(s, r, -1, "micro-batch %d chunk %d (stage %d) is missing its backward (B, or I and W)", m,
                             c, s->stage_of[r * V + c]);
            if ((f & SEEN_I) && !(f & SEEN_W))
                return VFAIL(s, r, -1, "micro-batch %d chunk %d has its I but no W; add W%d.%d", m, c, m, c);
        }
    if (ar_at < 0 || step_at < 0 || step_at != n - 1)
        return VFAIL(s, r, -1, "the list must end with AR STEP (gradient reduction, then the optimizer step)");
    return PT_OK;
}

/* Rule 5: pairs sends and receives per link; fills link/ordinal of every comm action. */
static pt_status check_links(const pt_schedule *s, comm_ref *sends, int n_sends, comm_ref *recvs, int n_recvs,
                             int **link_of, int **ord_of, int *n_links)
{
    qsort(sends, (size_t)n_sends, sizeof *sends, cmp_ref);
    qsort(recvs, (size_t)n_recvs, sizeof *recvs, cmp_ref);
    static const char *const what[2] = { "activation", "gradient" };
    int a = 0, b = 0, link = 0;
    while (a < n_sends || b < n_recvs) {
        const comm_ref *x = a < n_sends ? &sends[a] : NULL, *y = b < n_recvs ? &recvs[b] : NULL;
        int cmp = !x ? 1 : !y ? -1 : cmp_link(x, y);
        if (cmp < 0)
            return VFAIL(s, x->rank, x->index, "no rank %d receives this %s: rank %d has no matching %s<%d", x->dst,
                         what[x->kind], x->dst, x->kind ? "RG" : "RA", x->src);
        if (cmp > 0)
            return VFAIL(s, y->rank, y->index, "rank %d never sends this %s: it has no matching %s>%d", y->src,
                         what[y->kind], y->kind ? "SG" : "SA", y->dst);
        int k = 0;
        while (a < n_sends && b < n_recvs && sends[a].src == x->src && sends[a].dst == x->dst &&
               sends[a].kind == x->kind && recvs[b].src == x->src && recvs[b].dst == x->dst &&
               recvs[b].kind == x->kind) {
            const comm_ref *sd = &sends[a], *rv = &recvs[b];
            int want = sd->kind ? sd->stage - 1 : sd->stage + 1;
            if (sd->mb != rv->mb || rv->stage != want) {
                char tok[48];
                pt_action_format(&s->actions[sd->rank][sd->index], tok, sizeof tok);
                return VFAIL(s, rv->rank, rv->index,
                             "is %s number %d from rank %d, but rank %d's %s number %d to this rank is %s (its action "
                             "%d); sends and receives on a link must come in the same order",
                             what[sd->kind], k, sd->src, sd->src, what[sd->kind], k, tok, sd->index);
            }
            link_of[sd->rank][sd->index] = link_of[rv->rank][rv->index] = link;
            ord_of[sd->rank][sd->index] = ord_of[rv->rank][rv->index] = k;
            a++, b++, k++;
        }
        int more_s = a < n_sends && sends[a].src == x->src && sends[a].dst == x->dst && sends[a].kind == x->kind;
        int more_r = b < n_recvs && recvs[b].src == x->src && recvs[b].dst == x->dst && recvs[b].kind == x->kind;
        if (more_s)
            return VFAIL(s, sends[a].rank, sends[a].index,
                         "rank %d receives only %d %ss from rank %d, this is send number %d", sends[a].dst, k,
                         what[sends[a].kind], sends[a].src, k);
        if (more_r)
            return VFAIL(s, recvs[b].rank, recvs[b].index,
                         "rank %d sends only %d %ss to rank %d, this is receive number %d", recvs[b].src, k,
                         what[recvs[b].kind], recvs[b].dst, k);
        link++;
    }
    *n_links = link;
    return PT_OK;
}

/* Rule 6: run the lists with buffered sends and blocking receives. */
static pt_status check_deadlock(const pt_schedule *s, int **link_of, int **ord_of, int n_links)
{
    int P = s->n_ranks;
    int *pc = calloc((size_t)P, sizeof *pc);
    int *sent = calloc((size_t)(n_links ? n_links : 1), sizeof *sent);
    if (!pc || !sent) {
        free(pc);
        free(sent);
        return pt_fail(PT_ENOMEM, "validator: out of memory");
    }
    int progress = 1;
    while (progress) {
        progress = 0;
        for (int r = 0; r < P; r++) {
            while (pc[r] < s->n_actions[r]) {
                const pt_action *a = &s->actions[r][pc[r]];
                if (a->kind == PT_ACT_RECV_ACT || a->kind == PT_ACT_RECV_GRAD) {
                    if (sent[link_of[r][pc[r]]] <= ord_of[r][pc[r]])
                        break;
                } else if (a->kind == PT_ACT_SEND_ACT || a->kind == PT_ACT_SEND_GRAD) {
                    sent[link_of[r][pc[r]]]++;
                }
                pc[r]++;
                progress = 1;
            }
        }
    }
    int stuck = 0;
    for (int r = 0; r < P; r++)
        stuck += pc[r] < s->n_actions[r];
    if (!stuck) {
        free(pc);
        free(sent);
        return PT_OK;
    }
    /* The grid: every rank's position, a window of its list with the stuck action in [ ]. */
    pt_sbuf g = { 0 };
    pt_sbuf_printf(&g, "schedule %s: deadlock: %d rank%s wait%s forever (buffered sends, blocking receives); "
                       "positions, stuck action in [ ]:",
                   s->name, stuck, stuck > 1 ? "s" : "", stuck > 1 ? "" : "s");
    enum { BEFORE = 3, AFTER = 2, MAX_ROWS = 16 };
    int rows = 0;
    for (int r = 0; r < P; r++) {
        if (rows == MAX_ROWS) {
            pt_sbuf_printf(&g, "\n  ... %d more ranks", P - r);
            break;
        }
        rows++;
        int n = s->n_actions[r];
        pt_sbuf_printf(&g, "\n  rank%-3d %5d/%-5d", r, pc[r], n);
        char tok[48], cellb[64];
        for (int i = pc[r] - BEFORE; i <= pc[r] + AFTER; i++) {
            if (i < 0 || i >= n) {
                pt_sbuf_printf(&g, " %-11s", i == n ? "(done)" : "");
                continue;
            }
            pt_action_format(&s->actions[r][i], tok, sizeof tok);
            snprintf(cellb, sizeof cellb, i == pc[r] ? "[%s]" : " %s", tok);
            pt_sbuf_printf(&g, " %-11s", cellb);
        }
        if (pc[r] < n) {
            const pt_action *a = &s->actions[r][pc[r]];
            pt_sbuf_printf(&g, "  waits for %s %d from rank %d (%d sent so far)",
                           a->kind == PT_ACT_RECV_ACT ? "activation" : "gradient", ord_of[r][pc[r]], a->peer,
                           sent[link_of[r][pc[r]]]);
        }
    }
    free(pc);
    free(sent);
    char *text;
    if (pt_sbuf_finish(&g, "validator", &text) != PT_OK)
        return PT_ENOMEM;
    pt_status st = pt_fail(PT_EINVAL, "%s", text);
    free(text);
    return st;
}

pt_status pt_sched_validate(const pt_schedule *s)
{
    if (!s || s->n_ranks < 1 || s->n_chunks < 1 || s->n_microbatches < 1 || !s->stage_of || !s->n_actions ||
        !s->actions)
        return pt_fail(PT_EINVAL, "validator: empty or malformed schedule object; build it with pt_sched_create");
    int P = s->n_ranks, V = s->n_chunks, M = s->n_microbatches, S = P * V;
    pt_status st = PT_OK;
    int *owner_rank = malloc((size_t)S * sizeof(int)), *owner_chunk = malloc((size_t)S * sizeof(int));
    unsigned char *seen = malloc((size_t)V * M);
    int **link_of = calloc((size_t)P, sizeof(int *)), **ord_of = calloc((size_t)P, sizeof(int *));
    comm_ref *sends = NULL, *recvs = NULL;
    if (!owner_rank || !owner_chunk || !seen || !link_of || !ord_of) {
        st = pt_fail(PT_ENOMEM, "validator: out of memory");
        goto done;
    }
    for (int v = 0; v < S; v++)
        owner_rank[v] = -1;
    for (int k = 0; k < S; k++) {
        int v = s->stage_of[k];
        if (v < 0 || v >= S || owner_rank[v] >= 0) {
            st = pt_fail(PT_EINVAL, "schedule %s: the stage map gives rank %d chunk %d stage %d, %s", s->name, k / V,
                         k % V, v, (v < 0 || v >= S) ? "out of range" : "which another chunk already holds");
            goto done;
        }
        owner_rank[v] = k / V;
        owner_chunk[v] = k % V;
    }
    PT_TRY(check_fields(s), done);
    int n_sends = 0, n_recvs = 0;
    for (int r = 0; r < P; r++) {
        PT_TRY(check_rank(s, r, seen, owner_rank, owner_chunk), done);
        for (int i = 0; i < s->n_actions[r]; i++) {
            pt_action_kind k = s->actions[r][i].kind;
            n_sends += k == PT_ACT_SEND_ACT || k == PT_ACT_SEND_GRAD;
            n_recvs += k == PT_ACT_RECV_ACT || k == PT_ACT_RECV_GRAD;
        }
    }
    sends = malloc((size_t)(n_sends + 1) * sizeof *sends);
    recvs = malloc((size_t)(n_recvs + 1) * sizeof *recvs);
    if (!sends || !recvs) {
        st = pt_fail(PT_ENOMEM, "validator: out of memory");
        goto done;
    }
    n_sends = n_recvs = 0;
    for (int r = 0; r < P; r++) {
        link_of[r] = malloc((size_t)(s->n_actions[r] + 1) * sizeof(int));
        ord_of[r] = malloc((size_t)(s->n_actions[r] + 1) * sizeof(int));
        if (!link_of[r] || !ord_of[r]) {
            st = pt_fail(PT_ENOMEM, "validator: out of memory");
            goto done;
        }
        for (int i = 0; i < s->n_actions[r]; i++) {
            const pt_action *a = &s->actions[r][i];
            int v = pt_action_is_compute(a->kind) || a->kind >= PT_ACT_REDUCE_GRADS ? 0 : s->stage_of[r * V + a->chunk];
            comm_ref c = { .kind = comm_kind(a->kind), .rank = r, .index = i, .stage = v, .mb = a->microbatch };
            if (a->kind == PT_ACT_SEND_ACT || a->kind == PT_ACT_SEND_GRAD) {
                c.src = r;
                c.dst = a->peer;
                sends[n_sends++] = c;
            } else if (a->kind == PT_ACT_RECV_ACT || a->kind == PT_ACT_RECV_GRAD) {
                c.src = a->peer;
                c.dst = r;
                recvs[n_recvs++] = c;
            }
        }
    }
    int n_links = 0;
    PT_TRY(check_links(s, sends, n_sends, recvs, n_recvs, link_of, ord_of, &n_links), done);
    PT_TRY(check_deadlock(s, link_of, ord_of, n_links), done);
done:
    if (link_of)
        for (int r = 0; r < P; r++)
            free(link_of[r]);
    if (ord_of)
        for (int r = 0; r < P; r++)
            free(ord_of[r]);
    free(link_of);
    free(ord_of);
    free(sends);
    free(recvs);
    free(seen);
    free(owner_rank);
    free(owner_chunk);
    return st;
}
