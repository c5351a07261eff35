/* The schedule IR: creation, appending, copies, comparisons and small queries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/schedule.h"
#include "sched_internal.h"

static const char *const kind_names[] = {
    "FORWARD", "BACKWARD", "BACKWARD_INPUT", "BACKWARD_WEIGHT", "SEND_ACT",
    "RECV_ACT", "SEND_GRAD", "RECV_GRAD", "REDUCE_GRADS", "OPTIMIZER_STEP",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == PT_ACT_KIND_COUNT, "one name per action kind");

/* Text-form prefixes, in pt_action_kind order. */
const char *const pt_sched_kind_tokens[PT_ACT_KIND_COUNT] = {
    "F", "B", "I", "W", "SA", "RA", "SG", "RG", "AR", "STEP",
};

pt_status pt_sched_create(const char *name, int P, int V, int M, const int *stage_of, pt_schedule **out)
{
    *out = NULL;
    if (P < 1 || P > PT_SCHED_MAX_RANKS)
        return pt_fail(PT_EINVAL, "schedule: %d ranks is out of range; use 1..%d", P, PT_SCHED_MAX_RANKS);
    if (V < 1 || V > PT_SCHED_MAX_CHUNKS)
        return pt_fail(PT_EINVAL, "schedule: %d chunks per rank is out of range; use 1..%d", V, PT_SCHED_MAX_CHUNKS);
    if (M < 1 || M > PT_SCHED_MAX_MICROBATCHES)
        return pt_fail(PT_EINVAL, "schedule: %d micro-batches is out of range; use 1..%d", M,
                       PT_SCHED_MAX_MICROBATCHES);
    if ((long long)P * V > PT_SCHED_MAX_VSTAGES)
        return pt_fail(PT_EINVAL, "schedule: %d ranks x %d chunks is more than %d virtual stages; use fewer", P, V,
                       PT_SCHED_MAX_VSTAGES);
    if ((long long)P * V * M > PT_SCHED_MAX_WORK)
        return pt_fail(PT_EINVAL, "schedule: %d ranks x %d chunks x %d micro-batches is more than %d units of work; "
                                  "use fewer micro-batches",
                       P, V, M, PT_SCHED_MAX_WORK);
    int S = P * V;
    if (stage_of) {
        char *seen = calloc((size_t)S, 1);
        if (!seen)
            return pt_fail(PT_ENOMEM, "schedule: out of memory for %d stages", S);
        for (int k = 0; k < S; k++) {
            int v = stage_of[k];
            if (v < 0 || v >= S || seen[v]) {
                free(seen);
                return pt_fail(PT_EINVAL,
                               "schedule: stage map entry %d (rank %d chunk %d) = %d is %s; give each of the %d "
                               "virtual stages 0..%d to exactly one (rank, chunk)",
                               k, k / V, k % V, v, (v < 0 || v >= S) ? "out of range" : "a repeat", S, S - 1);
            }
            seen[v] = 1;
        }
        free(seen);
    }
    pt_schedule *s = calloc(1, sizeof *s);
    if (!s)
        return pt_fail(PT_ENOMEM, "schedule: out of memory");
    /* The name is one word of printable characters so that the text form can carry it. */
    snprintf(s->name, sizeof s->name, "%s", name && name[0] ? name : "unnamed");
    for (char *c = s->name; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 127)
            *c = '_';
    s->n_ranks = P;
    s->n_chunks = V;
    s->n_microbatches = M;
    s->stage_of = malloc((size_t)S * sizeof *s->stage_of);
    s->n_actions = calloc((size_t)P, sizeof *s->n_actions);
    s->cap_actions = calloc((size_t)P, sizeof *s->cap_actions);
    s->actions = calloc((size_t)P, sizeof *s->actions);
    if (!s->stage_of || !s->n_actions || !s->cap_actions || !s->actions) {
        pt_sched_destroy(s);
        return pt_fail(PT_ENOMEM, "schedule: out of memory for %d ranks", P);
    }
    for (int r = 0; r < P; r++)
        for (int c = 0; c < V; c++)
            s->stage_of[r * V + c] = stage_of ? stage_of[r * V + c] : c * P + r;
    *out = s;
    return PT_OK;
}

void pt_sched_destroy(pt_schedule *s)
{
    if (!s)
        return;
    if (s->actions)
        for (int r = 0; r < s->n_ranks; r++)
            free(s->actions[r]);
    free(s->actions);
    free(s->cap_actions);
    free(s->n_actions);
    free(s->stage_of);
    free(s);
}

pt_status pt_sched_append(pt_schedule *s, int rank, pt_action a)
{
    if (rank < 0 || rank >= s->n_ranks)
        return pt_fail(PT_EINVAL, "schedule: rank %d is out of range 0..%d", rank, s->n_ranks - 1);
    if (s->n_actions[rank] == s->cap_actions[rank]) {
        int cap = s->cap_actions[rank] ? s->cap_actions[rank] * 2 : 16;
        pt_action *p = realloc(s->actions[rank], (size_t)cap * sizeof *p);
        if (!p)
            return pt_fail(PT_ENOMEM, "schedule: out of memory for %d actions on rank %d", cap, rank);
        s->actions[rank] = p;
        s->cap_actions[rank] = cap;
    }
    s->actions[rank][s->n_actions[rank]++] = a;
    return PT_OK;
}

pt_status pt_sched_clone(const pt_schedule *s, pt_schedule **out)
{
    PT_CHECK(pt_sched_create(s->name, s->n_ranks, s->n_chunks, s->n_microbatches, s->stage_of, out));
    pt_schedule *d = *out;
    for (int r = 0; r < s->n_ranks; r++) {
        int n = s->n_actions[r];
        if (n == 0)
            continue;
        d->actions[r] = malloc((size_t)n * sizeof *d->actions[r]);
        if (!d->actions[r]) {
            pt_sched_destroy(d);
            *out = NULL;
            return pt_fail(PT_ENOMEM, "schedule: out of memory copying rank %d", r);
        }
        memcpy(d->actions[r], s->actions[r], (size_t)n * sizeof *d->actions[r]);
        d->n_actions[r] = d->cap_actions[r] = n;
    }
    return PT_OK;
}

int pt_sched_equal(const pt_schedule *a, const pt_schedule *b)
{
    if (strcmp(a->name, b->name) != 0 || a->n_ranks != b->n_ranks || a->n_chunks != b->n_chunks ||
        a->n_microbatches != b->n_microbatches)
        return 0;
    if (memcmp(a->stage_of, b->stage_of, (size_t)a->n_ranks * a->n_chunks * sizeof *a->stage_of) != 0)
        return 0;
    for (int r = 0; r < a->n_ranks; r++) {
        if (a->n_actions[r] != b->n_actions[r])
            return 0;
        for (int i = 0; i < a->n_actions[r]; i++) {
            const pt_action *x = &a->actions[r][i], *y = &b->actions[r][i];
            if (x->kind != y->kind || x->microbatch != y->microbatch || x->chunk != y->chunk || x->peer != y->peer)
                return 0;
        }
    }
    return 1;
}

int pt_sched_vstage(const pt_schedule *s, int rank, int chunk)
{
    return s->stage_of[rank * s->n_chunks + chunk];
}

pt_status pt_sched_owner(const pt_schedule *s, int vstage, int *rank, int *chunk)
{
    int S = s->n_ranks * s->n_chunks;
    for (int k = 0; k < S; k++)
        if (s->stage_of[k] == vstage) {
            *rank = k / s->n_chunks;
            *chunk = k % s->n_chunks;
            return PT_OK;
        }
    return pt_fail(PT_EINVAL, "schedule: no chunk holds virtual stage %d (stages 0..%d)", vstage, S - 1);
}

int pt_action_is_compute(pt_action_kind k)
{
    return k == PT_ACT_FORWARD || k == PT_ACT_BACKWARD || k == PT_ACT_BACKWARD_INPUT || k == PT_ACT_BACKWARD_WEIGHT;
}

const char *pt_action_kind_name(pt_action_kind k)
{
    return ((unsigned)k < PT_ACT_KIND_COUNT) ? kind_names[k] : "?";
}

int pt_action_format(const pt_action *a, char *buf, size_t cap)
{
    if ((unsigned)a->kind >= PT_ACT_KIND_COUNT)
        return snprintf(buf, cap, "?");
    const char *t = pt_sched_kind_tokens[a->kind];
    switch (a->kind) {
    case PT_ACT_FORWARD:
    case PT_ACT_BACKWARD:
    case PT_ACT_BACKWARD_INPUT:
    case PT_ACT_BACKWARD_WEIGHT:
        return snprintf(buf, cap, "%s%d.%d", t, a->microbatch, a->chunk);
    case PT_ACT_SEND_ACT:
    case PT_ACT_SEND_GRAD:
        return snprintf(buf, cap, "%s%d.%d>%d", t, a->microbatch, a->chunk, a->peer);
    case PT_ACT_RECV_ACT:
    case PT_ACT_RECV_GRAD:
        return snprintf(buf, cap, "%s%d.%d<%d", t, a->microbatch, a->chunk, a->peer);
    case PT_ACT_REDUCE_GRADS:
    case PT_ACT_OPTIMIZER_STEP:
    case PT_ACT_KIND_COUNT:
        break;
    }
    return snprintf(buf, cap, "%s", t);
}

int pt_sched_peak_inflight(const pt_schedule *s, int rank)
{
    if (rank < 0 || rank >= s->n_ranks)
        return -1;
    int held = 0, peak = 0;
    for (int i = 0; i < s->n_actions[rank]; i++) {
        pt_action_kind k = s->actions[rank][i].kind;
        if (k == PT_ACT_FORWARD && ++held > peak)
            peak = held;
        else if (k == PT_ACT_BACKWARD || k == PT_ACT_BACKWARD_WEIGHT)
            held--;
    }
    return peak;
}
