/* tests/profile/test_memkind.c — the allocator's account by kind (kernels/backend.c) and the
 * profile's memory summary (src/runtime/profile.c):
 *  - every kind's in-use and peak follow pt_backend_alloc_kind / pt_backend_free /
 *    pt_backend_account_kind exactly; an untagged pt_backend_alloc is "other"; the total is their
 *    sum; a kind's account never goes below 0; reset_peak resets every peak;
 *  - peak_kinds is the split of the total's peak, not the kinds' own peaks;
 *  - one-process pt_profile_gather_mem hands back the noted kinds, and summary.json's "memory"
 *    puts each rank's measured kinds beside the plan's prediction for its pipeline rank (r % P).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "pipetrain/backend.h"
#include "pipetrain/partition.h"
#include "pipetrain/profile.h"
#include "pipetrain/schedule.h"

static int g_fail;
#define EXPECT(c)                                                                                                     \
    do {                                                                                                              \
        if (!(c)) {                                                                                                   \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #c);                                          \
            g_fail++;                                                                                                 \
        }                                                                                                             \
    } while (0)

static void test_account(void)
{
    const pt_backend *be = &pt_backend_cpu;
    pt_mem_stats s;
    pt_backend_reset_peak();
    pt_backend_mem_stats(&s);
    const size_t base = s.in_use;
    void *w = NULL, *g = NULL, *a = NULL, *o = NULL;
    EXPECT(pt_backend_alloc_kind(be, &w, 1000, PT_MEM_WEIGHTS) == PT_OK);
    EXPECT(pt_backend_alloc_kind(be, &g, 3000, PT_MEM_GRADS) == PT_OK);
    EXPECT(pt_backend_alloc_kind(be, &a, 5000, PT_MEM_ACT) == PT_OK);
    EXPECT(pt_backend_alloc(be, &o, 700) == PT_OK); /* untagged: other */
    pt_backend_account_kind(4096, PT_MEM_COMM);
    pt_backend_mem_stats(&s);
    EXPECT(s.kind_in_use[PT_MEM_WEIGHTS] == 1000 && s.kind_in_use[PT_MEM_GRADS] == 3000);
    EXPECT(s.kind_in_use[PT_MEM_ACT] == 5000 && s.kind_in_use[PT_MEM_OTHER] == 700);
    EXPECT(s.kind_in_use[PT_MEM_COMM] == 4096 && s.kind_in_use[PT_MEM_OPTIM] == 0);
    EXPECT(s.in_use == base + 1000 + 3000 + 5000 + 700 + 4096);
    EXPECT(s.peak == s.in_use);
    EXPECT(pt_backend_bytes_in_use() == s.in_use && pt_backend_bytes_peak() == s.peak);
    /* activations go, optimizer state comes (smaller): the total's peak and its split stay at
     * the old moment; the kinds' own peaks are each kind's most */
    pt_backend_free(be, a);
    void *m = NULL;
    EXPECT(pt_backend_alloc_kind(be, &m, 2000, PT_MEM_OPTIM) == PT_OK);
    pt_backend_mem_stats(&s);
    EXPECT(s.kind_in_use[PT_MEM_ACT] == 0 && s.kind_peak[PT_MEM_ACT] == 5000);
    EXPECT(s.kind_in_use[PT_MEM_OPTIM] == 2000 && s.kind_peak[PT_MEM_OPTIM] == 2000);
    EXPECT(s.peak_kinds[PT_MEM_ACT] == 5000 && s.peak_kinds[PT_MEM_OPTIM] == 0);
    EXPECT(s.peak == base + 1000 + 3000 + 5000 + 700 + 4096);
    /* taking off more than a kind holds stops at 0 for that kind only */
    pt_backend_account_kind(-(long long)8192, PT_MEM_COMM);
    pt_backend_mem_stats(&s);
    EXPECT(s.kind_in_use[PT_MEM_COMM] == 0 && s.kind_in_use[PT_MEM_WEIGHTS] == 1000);
    EXPECT(s.in_use == base + 1000 + 3000 + 700 + 2000);
    /* an out-of-range kind counts as other */
    void *x = NULL;
    EXPECT(pt_backend_alloc_kind(be, &x, 300, (pt_mem_kind)99) == PT_OK);
    pt_backend_mem_stats(&s);
    EXPECT(s.kind_in_use[PT_MEM_OTHER] == 1000);
    pt_backend_free(be, x);
    pt_backend_reset_peak();
    pt_backend_mem_stats(&s);
    EXPECT(s.peak == s.in_use && s.kind_peak[PT_MEM_ACT] == 0 && s.kind_peak[PT_MEM_WEIGHTS] == 1000);
    EXPECT(s.peak_kinds[PT_MEM_OPTIM] == 2000);
    pt_backend_free(be, w);
    pt_backend_free(be, g);
    pt_backend_free(be, o);
    pt_backend_free(be, m);
    pt_backend_mem_stats(&s);
    EXPECT(s.in_use == base);
    for (int k = 0; k < PT_MEM_KINDS; k++)
        EXPECT(s.kind_in_use[k] == 0 || base > 0);
    EXPECT(strcmp(pt_mem_kind_name(PT_MEM_OPTIM), "optimizer") == 0 && strcmp(pt_mem_kind_name(42), "?") == 0);
}

static void test_summary(void)
{
    /* a plan of P = 2, D = 2 with a prediction per kind, and one process's profile standing for
     * world rank 3 (pipeline rank 1) */
    pt_plan *pl = NULL;
    EXPECT(pt_plan_create(2, 1, 2, &pl) == PT_OK);
    if (!pl)
        return;
    pl->first_layer[0] = 0, pl->last_layer[0] = 2, pl->first_layer[1] = 3, pl->last_layer[1] = 5;
    pl->zero = 1;
    for (int s = 0; s < 2; s++) {
        pl->pred_rank_mem_bytes[s] = 0;
        for (int k = 0; k < PT_MEM_KINDS; k++) {
            pl->pred_rank_mem_kind[s * PT_MEM_KINDS + k] = 1000.0 * (s + 1) * (k + 1);
            pl->pred_rank_mem_bytes[s] += 1000.0 * (s + 1) * (k + 1);
        }
    }
    pt_profile *p = NULL;
    EXPECT(pt_profile_create(0, 0, &p) == PT_OK);
    if (!p) {
        pt_plan_destroy(pl);
        return;
    }
    pt_mem_stats ms;
    memset(&ms, 0, sizeof ms);
    ms.peak = 123456;
    for (int k = 0; k < PT_MEM_KINDS; k++)
        ms.kind_peak[k] = 100 * (size_t)(k + 1);
    pt_profile_note_mem(p, &ms);
    ms.kind_peak[PT_MEM_ACT] = 50; /* a smaller later note keeps the maximum */
    pt_profile_note_mem(p, &ms);
    pt_prof_event ev[2] = {
        { .step = 1, .stage_rank = 0, .kind = PT_ACT_FORWARD, .microbatch = 0, .chunk = 0, .vstage = 0, .peer = -1,
          .start_ns = 0, .end_ns = 1000000 },
        { .step = 1, .stage_rank = 0, .kind = PT_ACT_BACKWARD, .microbatch = 0, .chunk = 0, .vstage = 0,
          .peer = -1, .start_ns = 1000000, .end_ns = 3000000 },
    };
    for (int i = 0; i < 2; i++)
        EXPECT(pt_profile_record(p, &ev[i]) == PT_OK);
    pt_prof_event *all = NULL;
    size_t n = 0;
    double peak[1] = { 0 }, kinds[PT_MEM_KINDS] = { 0 };
    EXPECT(pt_profile_gather_mem(p, NULL, 0, &all, &n, peak, kinds) == PT_OK && n == 2);
    EXPECT(peak[0] == 123456 && kinds[PT_MEM_WEIGHTS] == 100 && kinds[PT_MEM_ACT] == 400);
    /* world of 4 ranks: copy rank 0's numbers to every rank, events stay rank 0's */
    double peak4[4], kinds4[4 * PT_MEM_KINDS];
    for (int r = 0; r < 4; r++) {
        peak4[r] = peak[0] + r;
        for (int k = 0; k < PT_MEM_KINDS; k++)
            kinds4[r * PT_MEM_KINDS + k] = kinds[k] + r;
    }
    pt_profile_report_opts ro = { .plan = pl, .n_world = 4, .peak_bytes = peak4, .kind_peak_bytes = kinds4 };
    pt_profile_summary sum;
    EXPECT(pt_profile_summarize(all, n, &ro, &sum) == PT_OK);
    EXPECT(sum.has_kinds == 1);
    EXPECT(sum.pred_bytes[3] == pl->pred_rank_mem_bytes[1] && sum.pred_bytes[2] == pl->pred_rank_mem_bytes[0]);
    EXPECT(sum.pred_kind_bytes[3 * PT_MEM_KINDS + PT_MEM_OPTIM] == 2000.0 * 3);
    EXPECT(sum.kind_peak_bytes[3 * PT_MEM_KINDS + PT_MEM_OPTIM] == 300 + 3);
    char *text = NULL;
    EXPECT(pt_profile_summary_json(&sum, &ro, &text) == PT_OK);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(j, "memory");
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(mem, "ranks");
    EXPECT(cJSON_GetArraySize(ranks) == 4);
    EXPECT(cJSON_GetObjectItemCaseSensitive(mem, "zero") && cJSON_GetObjectItemCaseSensitive(mem, "zero")->valueint == 1);
    const cJSON *r3 = cJSON_GetArrayItem(ranks, 3);
    const cJSON *me = cJSON_GetObjectItemCaseSensitive(r3, "measured");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(r3, "predicted");
    EXPECT(cJSON_GetObjectItemCaseSensitive(r3, "stage")->valueint == 1);
    EXPECT(cJSON_GetObjectItemCaseSensitive(r3, "replica")->valueint == 1);
    EXPECT(cJSON_GetObjectItemCaseSensitive(me, "communication")->valuedouble == 500 + 3);
    EXPECT(cJSON_GetObjectItemCaseSensitive(pr, "communication")->valuedouble == 2000.0 * 5);
    EXPECT(cJSON_GetObjectItemCaseSensitive(r3, "pred_bytes")->valuedouble == pl->pred_rank_mem_bytes[1]);
    cJSON_Delete(j);
    free(text);
    pt_profile_summary_free(&sum);
    /* no kinds given: no "memory" object */
    ro.kind_peak_bytes = NULL;
    EXPECT(pt_profile_summarize(all, n, &ro, &sum) == PT_OK && sum.has_kinds == 0);
    text = NULL;
    EXPECT(pt_profile_summary_json(&sum, &ro, &text) == PT_OK && text && !strstr(text, "\"memory\""));
    free(text);
    pt_profile_summary_free(&sum);
    free(all);
    pt_profile_destroy(p);
    pt_plan_destroy(pl);
}

int main(void)
{
    test_account();
    test_summary();
    if (g_fail) {
        fprintf(stderr, "%d failure(s)\n", g_fail);
        return 1;
    }
    printf("ok\n");
    return 0;
}
