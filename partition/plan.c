/* The plan object: creation, manual layouts, rank placement, memory check, JSON form. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition_internal.h"
#include "pipetrain/json.h"
#ifdef PT_PARTITION_HAVE_SCHEDULE
#include "pipetrain/schedule.h"
#endif

/* ---- schedules the planner prices ---- */

typedef struct {
    const char *name;
    int default_chunks; /* V */
    int fixed_chunks;   /* 1: V must equal default_chunks */
    int min_chunks;     /* otherwise V >= min_chunks */
    int split_backward; /* 1: the schedule has BACKWARD_INPUT / BACKWARD_WEIGHT actions */
} sched_info;

static const sched_info sched_table[] = {
    { "gpipe", 1, 1, 1, 0 }, { "1f1b", 1, 1, 1, 0 },  { "interleaved", 2, 0, 2, 0 }, { "looped-bfs", 2, 0, 1, 0 },
    { "zb-h1", 1, 1, 1, 1 }, { "zb-h2", 1, 1, 1, 1 }, { "zbv", 2, 1, 2, 1 },
};

static const sched_info *sched_find(const char *name)
{
    for (size_t i = 0; i < sizeof sched_table / sizeof sched_table[0]; i++)
        if (name && strcmp(name, sched_table[i].name) == 0)
            return &sched_table[i];
    return NULL;
}

int pt_part_sched_default_chunks(const char *schedule)
{
    const sched_info *s = sched_find(schedule);
    return s ? s->default_chunks : 0;
}

int pt_part_sched_fused_only(const char *schedule)
{
    const sched_info *s = sched_find(schedule);
    return s && !s->split_backward;
}

int pt_plan_fused_only(const pt_plan *p) { return pt_part_sched_fused_only(p->schedule); }

int pt_plan_single_layer_bound(const pt_plan *p, int *chunk, double *share, double *balance)
{
    if (!p || p->n_vstages < 2 || !p->pred_time_s)
        return 0;
    double total = 0;
    int slow = 0;
    for (int k = 0; k < p->n_vstages; k++) {
        total += p->pred_time_s[k];
        slow = p->pred_time_s[k] > p->pred_time_s[slow] ? k : slow;
    }
    double tmax = p->pred_time_s[slow];
    if (tmax <= 0 || p->first_layer[slow] != p->last_layer[slow])
        return 0;
    double bal = total / (p->n_vstages * tmax);
    if (bal >= 0.9)
        return 0;
    *chunk = slow;
    *share = tmax / total;
    *balance = bal;
    return 1;
}

pt_status pt_part_sched_check_chunks(const char *schedule, int V)
{
    const sched_info *s = sched_find(schedule);
    if (!s)
        return pt_fail(PT_EINVAL, "unknown schedule '%s'; use gpipe, 1f1b, interleaved, looped-bfs, zb-h1, zb-h2 or zbv",
                       schedule ? schedule : "(null)");
    if (s->fixed_chunks && V != s->default_chunks)
        return pt_fail(PT_EINVAL, "schedule %s runs %d chunk(s) per rank, not %d; drop --chunks or change the schedule",
                       s->name, s->default_chunks, V);
    if (!s->fixed_chunks && V < s->min_chunks)
        return pt_fail(PT_EINVAL, "schedule %s needs at least %d chunks per rank (got %d)", s->name, s->min_chunks, V);
    return PT_OK;
}

#ifdef PT_PARTITION_HAVE_SCHEDULE
/* Per-stage peak of (micro-batch) activations of a generated schedule: held from F until B, or
 * until W with split backward, exactly as the runtime's dry run sizes its slots. */
static pt_status inflight_from_generator(const char *schedule, int P, int V, int M, int *out)
{
    pt_schedule *sc = NULL;
    PT_CHECK(pt_sched_generate(schedule, P, V, M, NULL, &sc));
    const int S = P * V;
    int *held = calloc((size_t)S, sizeof(int));
    if (!held) {
        pt_sched_destroy(sc);
        return pt_fail(PT_ENOMEM, "out of host memory counting in-flight micro-batches");
    }
    memset(out, 0, sizeof(int) * (size_t)S);
    for (int r = 0; r < P; r++) {
        for (int i = 0; i < sc->n_actions[r]; i++) {
            const pt_action *a = &sc->actions[r][i];
            if (a->kind != PT_ACT_FORWARD && a->kind != PT_ACT_BACKWARD && a->kind != PT_ACT_BACKWARD_WEIGHT)
                continue; /* communication, AR and STEP name no chunk */
            const int k = sc->stage_of[r * V + a->chunk];
            if (a->kind == PT_ACT_FORWARD && ++held[k] > out[k])
                out[k] = held[k];
            else if (a->kind == PT_ACT_BACKWARD || a->kind == PT_ACT_BACKWARD_WEIGHT)
                held[k]--;
        }
    }
    free(held);
    pt_sched_destroy(sc);
    return PT_OK;
}
#endif

pt_status pt_part_inflight_counts(const char *schedule, int P, int V, int M, int *out)
{
    const int S = P * V;
    PT_CHECK(pt_part_sched_check_chunks(schedule, V));
    if (strcmp(schedule, "interleaved") == 0) {
#ifdef PT_PARTITION_HAVE_SCHEDULE
        /* the interleaved generator ignores costs: its counts are exact */
        if (inflight_from_generator(schedule, P, V, M, out) == PT_OK)
            return PT_OK;
        pt_clear_error();
#endif
        for (int k = 0; k < S; k++)
            out[k] = M; /* without the generator: the safe bound */
        return PT_OK;
    }
    for (int k = 0; k < S; k++) {
        int n;
        if (strcmp(schedule, "gpipe") == 0 || strcmp(schedule, "looped-bfs") == 0)
            n = M; /* every forward (of a chunk) runs before its backwards */
        else if (strcmp(schedule, "1f1b") == 0)
            n = P - k; /* stage s runs P - s forwards ahead of its first backward */
        else if (strcmp(schedule, "zb-h1") == 0)
            n = P; /* W deferred: every stage holds P until its weight gradients */
        else if (strcmp(schedule, "zb-h2") == 0)
            n = 2 * P - 1;
        else /* zbv: the list scheduler holds up to 2P on a chunk, depending on the costs */
            n = 2 * P;
        out[k] = n < M ? n : M;
    }
    return PT_OK;
}

/* ---- the object ---- */

pt_status pt_plan_create(int P, int V, int D, pt_plan **out)
{
    if (P < 1 || V < 1 || D < 1 || P > (1 << 20) / V)
        return pt_fail(PT_EINVAL, "a plan needs >= 1 stages, chunks and replicas (got P=%d V=%d D=%d)", P, V, D);
    pt_plan *p = calloc(1, sizeof *p);
    if (!p)
        return pt_fail(PT_ENOMEM, "out of host memory for a plan");
    const int S = P * V;
    p->n_stages = P;
    p->n_chunks = V;
    p->n_replicas = D;
    p->n_tp = 1;
    p->n_vstages = S;
    p->first_layer = calloc((size_t)S, sizeof(int));
    p->last_layer = calloc((size_t)S, sizeof(int));
    p->recompute = calloc((size_t)S, sizeof(int));
    p->pred_time_s = calloc((size_t)S, sizeof(double));
    p->pred_mem_bytes = calloc((size_t)S, sizeof(double));
    p->n_params = calloc((size_t)S, sizeof(int64_t));
    p->boundary_inter = calloc((size_t)S, sizeof(int));
    p->pred_rank_mem_bytes = calloc((size_t)P, sizeof(double));
    p->pred_rank_mem_kind = calloc((size_t)P * PT_MEM_KINDS, sizeof(double));
    if (!p->first_layer || !p->last_layer || !p->recompute || !p->pred_time_s || !p->pred_mem_bytes || !p->n_params ||
        !p->boundary_inter || !p->pred_rank_mem_bytes || !p->pred_rank_mem_kind) {
        pt_plan_destroy(p);
        return pt_fail(PT_ENOMEM, "out of host memory for a plan of %d chunks", S);
    }
    p->micro_batch_size = 1;
    p->n_microbatches = 1;
    p->n_nodes = 1;
    p->devices_per_node = P * D;
    snprintf(p->schedule, sizeof p->schedule, "%s", V == 1 ? "1f1b" : "interleaved");
    snprintf(p->method, sizeof p->method, "manual");
    *out = p;
    return PT_OK;
}

void pt_plan_destroy(pt_plan *p)
{
    if (!p)
        return;
    free(p->pred_rank_mem_kind);
    free(p->pred_rank_mem_bytes);
    free(p->boundary_inter);
    free(p->n_params);
    free(p->pred_mem_bytes);
    free(p->pred_time_s);
    free(p->recompute);
    free(p->last_layer);
    free(p->first_layer);
    free(p);
}

void pt_plan_vstage_place(const pt_plan *p, int k, int *rank, int *chunk)
{
    const int P = p->n_stages;
    if (strcmp(p->schedule, "zbv") == 0 && p->n_chunks == 2) {
        *rank = k < P ? k : 2 * P - 1 - k;
        *chunk = k < P ? 0 : 1;
    } else {
        *rank = k % P;
        *chunk = k / P;
    }
}

pt_status pt_plan_from_layout(const pt_model_config *cfg, const char *layout, int V, pt_plan **out)
{
    const int L = pt_model_n_layers(cfg);
    if (!layout || !*layout)
        return pt_fail(PT_EINVAL, "empty --layout; give layers per stage such as 3,3 (embedding and head count)");
    if (V < 1)
        return pt_fail(PT_EINVAL, "chunks per rank must be >= 1 (got %d)", V);
    int counts[4096], n = 0;
    long sum = 0;
    const char *s = layout;
    while (*s) {
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 1 || v > L)
            return pt_fail(PT_EINVAL, "--layout '%s': entry %d is not a layer count in 1..%d", layout, n + 1, L);
        if (n == (int)(sizeof counts / sizeof counts[0]))
            return pt_fail(PT_EINVAL, "--layout '%s' has more than %d entries", layout, n);
        counts[n++] = (int)v;
        sum += v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return pt_fail(PT_EINVAL, "--layout '%s': expected a comma after entry %d", layout, n);
    }
    if (sum != L)
        return pt_fail(PT_EINVAL,
                       "--layout '%s' covers %ld layers but %s has %d (embedding + %d blocks + head); make the counts sum to %d",
                       layout, sum, cfg->name[0] ? cfg->name : "the model", L, cfg->n_layer, L);
    if (n % V != 0)
        return pt_fail(PT_EINVAL, "--layout '%s' has %d chunks, not a multiple of %d chunks per rank", layout, n, V);
    pt_plan *p;
    PT_CHECK(pt_plan_create(n / V, V, 1, &p));
    int first = 0;
    for (int k = 0; k < n; k++) {
        p->first_layer[k] = first;
        p->last_layer[k] = first + counts[k] - 1;
        first += counts[k];
    }
    p->seq_len = cfg->max_seq_len;
    *out = p;
    return PT_OK;
}

pt_status pt_plan_check_memory(const pt_plan *p, double cap_bytes)
{
    if (!(cap_bytes > 0))
        return PT_OK;
    for (int r = 0; r < p->n_stages; r++)
        if (p->pred_rank_mem_bytes[r] > cap_bytes)
            return pt_fail(PT_ENOMEM, "stage %d needs %.2f GB but a device has %.2f GB; use --partition memory, more "
                           "devices, recomputation or a smaller micro-batch",
                           r, p->pred_rank_mem_bytes[r] / 1e9, cap_bytes / 1e9);
    return PT_OK;
}

/* ---- JSON ---- */

#define PT_PLAN_FORMAT "pipetrain-plan"

pt_status pt_plan_to_json(const pt_plan *p, cJSON **out)
{
    cJSON *j = cJSON_CreateObject(), *chunks = cJSON_CreateArray();
    if (!j || !chunks) {
        cJSON_Delete(j);
        cJSON_Delete(chunks);
        return pt_fail(PT_ENOMEM, "out of host memory for the plan's JSON");
    }
    cJSON_AddStringToObject(j, "format", PT_PLAN_FORMAT);
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "method", p->method);
    cJSON_AddStringToObject(j, "schedule", p->schedule);
    cJSON_AddNumberToObject(j, "stages", p->n_stages);
    cJSON_AddNumberToObject(j, "chunks", p->n_chunks);
    cJSON_AddNumberToObject(j, "replicas", p->n_replicas);
    cJSON_AddNumberToObject(j, "micro_batch_size", p->micro_batch_size);
    cJSON_AddNumberToObject(j, "micro_batches", p->n_microbatches);
    cJSON_AddNumberToObject(j, "seq_len", p->seq_len);
    cJSON_AddStringToObject(j, "device", p->device);
    cJSON_AddNumberToObject(j, "nodes", p->n_nodes);
    cJSON_AddNumberToObject(j, "devices_per_node", p->devices_per_node);
    cJSON_AddNumberToObject(j, "params_total", (double)p->n_params_total);
    cJSON_AddNumberToObject(j, "head_split", p->head_split > 1 ? p->head_split : 1);
    cJSON_AddNumberToObject(j, "zero", p->zero ? 1 : 0);
    cJSON_AddNumberToObject(j, "n_tp", p->n_tp > 1 ? p->n_tp : 1);
    cJSON_AddBoolToObject(j, "sp", p->n_tp > 1 && p->sp);
    for (int k = 0; k < p->n_vstages; k++) {
        cJSON *c = cJSON_CreateObject();
        if (!c) {
            cJSON_Delete(chunks);
            cJSON_Delete(j);
            return pt_fail(PT_ENOMEM, "out of host memory for the plan's JSON");
        }
        int rank, chunk;
        pt_plan_vstage_place(p, k, &rank, &chunk);
        cJSON_AddNumberToObject(c, "first_layer", p->first_layer[k]);
        cJSON_AddNumberToObject(c, "last_layer", p->last_layer[k]);
        cJSON_AddNumberToObject(c, "layers", p->last_layer[k] - p->first_layer[k] + 1);
        cJSON_AddNumberToObject(c, "rank", rank);
        cJSON_AddNumberToObject(c, "chunk", chunk);
        cJSON_AddBoolToObject(c, "recompute", p->recompute[k] != 0);
        cJSON_AddNumberToObject(c, "params", (double)p->n_params[k]);
        cJSON_AddNumberToObject(c, "pred_time_s", p->pred_time_s[k]);
        cJSON_AddNumberToObject(c, "pred_mem_bytes", p->pred_mem_bytes[k]);
        if (k + 1 < p->n_vstages)
            cJSON_AddStringToObject(c, "link_after", p->boundary_inter[k] ? "inter-node" : "intra-node");
        cJSON_AddItemToArray(chunks, c);
    }
    cJSON_AddItemToObject(j, "chunk_list", chunks);
    cJSON *rm = cJSON_CreateDoubleArray(p->pred_rank_mem_bytes, p->n_stages);
    if (rm)
        cJSON_AddItemToObject(j, "pred_rank_mem_bytes", rm);
    cJSON *rk = cJSON_CreateArray();
    for (int r = 0; rk && r < p->n_stages; r++) {
        cJSON *o = cJSON_CreateObject();
        for (int q = 0; o && q < PT_MEM_KINDS; q++)
            cJSON_AddNumberToObject(o, pt_mem_kind_name(q), p->pred_rank_mem_kind[(size_t)r * PT_MEM_KINDS + q]);
        if (o)
            cJSON_AddItemToArray(rk, o);
    }
    if (rk)
        cJSON_AddItemToObject(j, "pred_rank_mem_by_kind", rk);
    cJSON_AddNumberToObject(j, "pred_step_time_s", p->pred_step_time_s);
    cJSON_AddNumberToObject(j, "pred_bubble", p->pred_bubble);
    cJSON_AddNumberToObject(j, "pred_tokens_per_s", p->pred_tokens_per_s);
    cJSON_AddNumberToObject(j, "pred_mfu", p->pred_mfu);
    cJSON_AddNumberToObject(j, "pred_dp_comm_s", p->pred_comm_s);
    cJSON_AddNumberToObject(j, "pred_optim_s", p->pred_optim_s);
    cJSON_AddNumberToObject(j, "pred_tp_comm_s", p->pred_tp_comm_s);
    *out = j;
    return PT_OK;
}

static pt_status get_num(const cJSON *o, const char *what, const char *key, double *out)
{
    return pt_json_get_double(o, what, key, out);
}

pt_status pt_plan_from_json(const cJSON *j, pt_plan **out)
{
    static const char *const keys[] = { "format", "version", "method", "schedule", "stages", "chunks", "replicas",
                                        "micro_batch_size", "micro_batches", "seq_len", "device", "nodes",
                                        "devices_per_node", "params_total", "chunk_list", "pred_rank_mem_bytes",
                                        "pred_step_time_s", "pred_bubble", "pred_tokens_per_s", "pred_mfu",
                                        "pred_dp_comm_s", "pred_optim_s", "head_split", "zero",
                                        "pred_rank_mem_by_kind", "n_tp", "sp", "pred_tp_comm_s",
                                        "model" /* written by pipetrain plan, read by train --plan */, NULL };
    static const char *const chunk_keys[] = { "first_layer", "last_layer", "layers", "rank", "chunk", "recompute",
                                              "params", "pred_time_s", "pred_mem_bytes", "link_after", NULL };
    const char *what = "plan";
    const char *s;
    long long P, V, D, v;
    PT_CHECK(pt_json_check_keys(j, what, keys));
    PT_CHECK(pt_json_get_string(j, what, "format", &s));
    if (strcmp(s, PT_PLAN_FORMAT) != 0)
        return pt_fail(PT_EFORMAT, "plan: format '%s' is not a pipetrain plan; make one with pipetrain plan --json", s);
    PT_CHECK(pt_json_get_int(j, what, "version", 1, 1, &v));
    PT_CHECK(pt_json_get_int(j, what, "stages", 1, 1 << 20, &P));
    PT_CHECK(pt_json_get_int(j, what, "chunks", 1, 64, &V));
    PT_CHECK(pt_json_get_int(j, what, "replicas", 1, 1 << 20, &D));
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "chunk_list");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != P * V)
        return pt_fail(PT_EFORMAT, "plan: chunk_list must hold stages x chunks = %lld entries", P * V);
    pt_plan *p;
    PT_CHECK(pt_plan_create((int)P, (int)V, (int)D, &p));
    pt_status st = PT_OK;
    PT_TRY(pt_json_get_string(j, what, "method", &s), fail);
    snprintf(p->method, sizeof p->method, "%s", s);
    PT_TRY(pt_json_get_string(j, what, "schedule", &s), fail);
    snprintf(p->schedule, sizeof p->schedule, "%s", s);
    PT_TRY(pt_json_get_string(j, what, "device", &s), fail);
    snprintf(p->device, sizeof p->device, "%s", s);
    PT_TRY(pt_json_get_int(j, what, "micro_batch_size", 1, 1 << 24, &v), fail);
    p->micro_batch_size = (int)v;
    PT_TRY(pt_json_get_int(j, what, "micro_batches", 1, 1 << 24, &v), fail);
    p->n_microbatches = (int)v;
    PT_TRY(pt_json_get_int(j, what, "seq_len", 1, 1 << 24, &v), fail);
    p->seq_len = (int)v;
    PT_TRY(pt_json_get_int(j, what, "nodes", 1, 1 << 20, &v), fail);
    p->n_nodes = (int)v;
    PT_TRY(pt_json_get_int(j, what, "devices_per_node", 1, 1 << 20, &v), fail);
    p->devices_per_node = (int)v;
    PT_TRY(pt_json_get_int(j, what, "params_total", 0, (long long)1 << 50, &v), fail);
    p->n_params_total = v;
    p->head_split = 1;
    if (cJSON_HasObjectItem(j, "head_split")) {
        PT_TRY(pt_json_get_int(j, what, "head_split", 1, 256, &v), fail);
        p->head_split = (int)v;
    }
    if (cJSON_HasObjectItem(j, "zero")) {
        PT_TRY(pt_json_get_int(j, what, "zero", 0, 1, &v), fail);
        p->zero = (int)v;
    }
    if (cJSON_HasObjectItem(j, "n_tp")) { /* optional: plans without it have no tensor parallelism */
        PT_TRY(pt_json_get_int(j, what, "n_tp", 1, 1 << 16, &v), fail);
        p->n_tp = (int)v;
    }
    const cJSON *spj = cJSON_GetObjectItemCaseSensitive(j, "sp");
    if (spj) {
        if (!cJSON_IsBool(spj)) {
            st = pt_fail(PT_EFORMAT, "plan: sp must be true or false");
            goto fail;
        }
        p->sp = cJSON_IsTrue(spj) && p->n_tp > 1;
    }
    if (cJSON_HasObjectItem(j, "pred_tp_comm_s"))
        PT_TRY(get_num(j, what, "pred_tp_comm_s", &p->pred_tp_comm_s), fail);
    PT_TRY(get_num(j, what, "pred_step_time_s", &p->pred_step_time_s), fail);
    PT_TRY(get_num(j, what, "pred_bubble", &p->pred_bubble), fail);
    PT_TRY(get_num(j, what, "pred_tokens_per_s", &p->pred_tokens_per_s), fail);
    PT_TRY(get_num(j, what, "pred_mfu", &p->pred_mfu), fail);
    PT_TRY(get_num(j, what, "pred_dp_comm_s", &p->pred_comm_s), fail);
    PT_TRY(get_num(j, what, "pred_optim_s", &p->pred_optim_s), fail);
    const cJSON *rm = cJSON_GetObjectItemCaseSensitive(j, "pred_rank_mem_bytes");
    if (!cJSON_IsArray(rm) || cJSON_GetArraySize(rm) != P) {
        st = pt_fail(PT_EFORMAT, "plan: pred_rank_mem_bytes must hold %lld numbers", P);
        goto fail;
    }
    for (int r = 0; r < P; r++) {
        const cJSON *x = cJSON_GetArrayItem(rm, r);
        if (!cJSON_IsNumber(x)) {
            st = pt_fail(PT_EFORMAT, "plan: pred_rank_mem_bytes[%d] must be a number", r);
            goto fail;
        }
        p->pred_rank_mem_bytes[r] = x->valuedouble;
    }
    const cJSON *rk = cJSON_GetObjectItemCaseSensitive(j, "pred_rank_mem_by_kind");
    if (rk && (!cJSON_IsArray(rk) || cJSON_GetArraySize(rk) != P)) {
        st = pt_fail(PT_EFORMAT, "plan: pred_rank_mem_by_kind must hold %lld objects, one per stage", P);
        goto fail;
    }
    for (int r = 0; rk && r < P; r++) {
        const cJSON *o = cJSON_GetArrayItem(rk, r);
        char w[64];
        snprintf(w, sizeof w, "plan: pred_rank_mem_by_kind[%d]", r);
        static const char *const kind_keys[] = { "weights",       "gradients", "optimizer", "activations",
                                                 "communication", "other",     NULL };
        PT_TRY(pt_json_check_keys(o, w, kind_keys), fail);
        for (int q = 0; q < PT_MEM_KINDS; q++)
            if (cJSON_HasObjectItem(o, pt_mem_kind_name(q)))
                PT_TRY(get_num(o, w, pt_mem_kind_name(q), &p->pred_rank_mem_kind[(size_t)r * PT_MEM_KINDS + q]), fail);
    }
    int k = 0, expect_first = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, list)
    {
        char w[64];
        snprintf(w, sizeof w, "plan: chunk_list[%d]", k);
        long long f, l;
        PT_TRY(pt_json_check_keys(c, w, chunk_keys), fail);
        PT_TRY(pt_json_get_int(c, w, "first_layer", expect_first, expect_first, &f), fail);
        PT_TRY(pt_json_get_int(c, w, "last_layer", f, 1 << 24, &l), fail);
        p->first_layer[k] = (int)f;
        p->last_layer[k] = (int)l;
        expect_first = (int)l + 1;
        const cJSON *rc = cJSON_GetObjectItemCaseSensitive(c, "recompute");
        if (!cJSON_IsBool(rc)) {
            st = pt_fail(PT_EFORMAT, "%s: recompute must be true or false", w);
            goto fail;
        }
        p->recompute[k] = cJSON_IsTrue(rc);
        PT_TRY(pt_json_get_int(c, w, "params", 0, (long long)1 << 50, &v), fail);
        p->n_params[k] = v;
        PT_TRY(get_num(c, w, "pred_time_s", &p->pred_time_s[k]), fail);
        PT_TRY(get_num(c, w, "pred_mem_bytes", &p->pred_mem_bytes[k]), fail);
        if (k + 1 < P * V) {
            PT_TRY(pt_json_get_string(c, w, "link_after", &s), fail);
            p->boundary_inter[k] = strcmp(s, "inter-node") == 0;
        }
        k++;
    }
    *out = p;
    return PT_OK;
fail:
    pt_plan_destroy(p);
    return st;
}
