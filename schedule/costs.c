/* Per-(stage, kind) costs (pt_sim_costs): uniform defaults and the JSON file form
 * (docs/schedules.md). Costs are an input both of the simulator (simulate.c) and of the
 * cost-driven generators (zb-h1, zb-h2, zbv in generate.c), so they live in a file of their own
 * that neither depends on the other through. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/json.h"
#include "pipetrain/schedule.h"
#include "sched_internal.h"

static pt_status costs_alloc(int n, pt_sim_costs **out)
{
    *out = NULL;
    if (n < 1 || n > PT_SCHED_MAX_VSTAGES)
        return pt_fail(PT_EINVAL, "costs: %d stages is out of range 1..%d", n, PT_SCHED_MAX_VSTAGES);
    pt_sim_costs *c = calloc(1, sizeof *c);
    if (!c)
        return pt_fail(PT_ENOMEM, "costs: out of memory");
    c->n_vstages = n;
    c->f = malloc((size_t)n * sizeof(double));
    c->b = malloc((size_t)n * sizeof(double));
    c->i = malloc((size_t)n * sizeof(double));
    c->w = malloc((size_t)n * sizeof(double));
    c->act_bytes = malloc((size_t)n * sizeof(double));
    c->boundary_bytes = malloc((size_t)n * sizeof(double));
    if (!c->f || !c->b || !c->i || !c->w || !c->act_bytes || !c->boundary_bytes) {
        pt_sim_costs_destroy(c);
        return pt_fail(PT_ENOMEM, "costs: out of memory for %d stages", n);
    }
    for (int v = 0; v < n; v++) {
        c->f[v] = 1.0;
        c->b[v] = 2.0;
        c->i[v] = 1.0;
        c->w[v] = 1.0;
        c->act_bytes[v] = 1.0;
        c->boundary_bytes[v] = 0.0;
    }
    *out = c;
    return PT_OK;
}

pt_status pt_sim_costs_uniform(int n_vstages, pt_sim_costs **out)
{
    return costs_alloc(n_vstages, out);
}

void pt_sim_costs_destroy(pt_sim_costs *c)
{
    if (!c)
        return;
    free(c->f);
    free(c->b);
    free(c->i);
    free(c->w);
    free(c->act_bytes);
    free(c->boundary_bytes);
    free(c);
}

/* Reads key `k` as a number for every stage or an array of n numbers, all >= 0 and finite.
 * *present says whether the key was there. */
static pt_status read_per_stage(const cJSON *root, const char *path, const char *k, int n, double *dst, int *present)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, k);
    *present = j != NULL;
    if (!j)
        return PT_OK;
    if (cJSON_IsNumber(j)) {
        if (!(j->valuedouble >= 0) || !isfinite(j->valuedouble))
            return pt_fail(PT_EINVAL, "%s: \"%s\" is %g; costs must be finite and >= 0", path, k, j->valuedouble);
        for (int v = 0; v < n; v++)
            dst[v] = j->valuedouble;
        return PT_OK;
    }
    if (!cJSON_IsArray(j))
        return pt_fail(PT_EINVAL, "%s: \"%s\" must be a number or an array of %d numbers (one per stage)", path, k, n);
    if (cJSON_GetArraySize(j) != n)
        return pt_fail(PT_EINVAL, "%s: \"%s\" has %d entries; the schedule has %d virtual stages", path, k,
                       cJSON_GetArraySize(j), n);
    int v = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0) || !isfinite(e->valuedouble))
            return pt_fail(PT_EINVAL, "%s: \"%s\"[%d] must be a finite number >= 0", path, k, v);
        dst[v++] = e->valuedouble;
    }
    return PT_OK;
}

static pt_status read_scalar(const cJSON *root, const char *path, const char *k, double *dst)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, k);
    if (!j)
        return PT_OK;
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= 0) || !isfinite(j->valuedouble))
        return pt_fail(PT_EINVAL, "%s: \"%s\" must be a finite number >= 0", path, k);
    *dst = j->valuedouble;
    return PT_OK;
}

pt_status pt_sim_costs_load(const char *path, int n_vstages, pt_sim_costs **out)
{
    *out = NULL;
    cJSON *root;
    PT_CHECK(pt_json_read_file(path, &root));
    pt_sim_costs *c = NULL;
    pt_status st = PT_OK;
    static const char *const keys[] = { "comment", "f", "b", "i", "w", "act_bytes", "boundary_bytes",
                                        "link_latency_s", "link_bandwidth_Bps", "reduce_s", "step_s", NULL };
    if (!cJSON_IsObject(root)) {
        st = pt_fail(PT_EINVAL, "%s: a cost file is a JSON object (see docs/schedules.md)", path);
        goto done;
    }
    PT_TRY(pt_json_check_keys(root, path, keys), done);
    PT_TRY(costs_alloc(n_vstages, &c), done);
    int has_f, has_b, has_i, has_w, unused;
    PT_TRY(read_per_stage(root, path, "f", n_vstages, c->f, &has_f), done);
    PT_TRY(read_per_stage(root, path, "b", n_vstages, c->b, &has_b), done);
    PT_TRY(read_per_stage(root, path, "i", n_vstages, c->i, &has_i), done);
    PT_TRY(read_per_stage(root, path, "w", n_vstages, c->w, &has_w), done);
    PT_TRY(read_per_stage(root, path, "act_bytes", n_vstages, c->act_bytes, &unused), done);
    PT_TRY(read_per_stage(root, path, "boundary_bytes", n_vstages, c->boundary_bytes, &unused), done);
    (void)has_f;
    for (int v = 0; v < n_vstages; v++) {
        if (!has_b && (has_i || has_w))
            c->b[v] = c->i[v] + c->w[v];
        if (has_b && !has_i)
            c->i[v] = has_w ? fmax(c->b[v] - c->w[v], 0.0) : c->b[v] / 2;
        if (has_b && !has_w)
            c->w[v] = has_i ? fmax(c->b[v] - c->i[v], 0.0) : c->b[v] / 2;
    }
    PT_TRY(read_scalar(root, path, "link_latency_s", &c->link_latency_s), done);
    PT_TRY(read_scalar(root, path, "link_bandwidth_Bps", &c->link_bandwidth_Bps), done);
    PT_TRY(read_scalar(root, path, "reduce_s", &c->reduce_s), done);
    PT_TRY(read_scalar(root, path, "step_s", &c->step_s), done);
    *out = c;
    c = NULL;
done:
    pt_sim_costs_destroy(c);
    cJSON_Delete(root);
    return st;
}
