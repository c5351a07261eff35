/* pipetrain/memkind.h — the kinds of memory a rank holds, shared by the allocator's account
 * (backend.h: pt_backend_alloc_kind, pt_backend_mem_stats), the planner's predictions
 * (partition.h: pt_plan.pred_rank_mem_kind) and the profile's summary (profile.h), so that a
 * measured kind and a predicted one are the same thing. docs/training.md, "Memory per rank: what
 * is counted", says which buffer is which kind.
 *
 * Pure definitions; thread-safe.
 */
#ifndef PIPETRAIN_MEMKIND_H
#define PIPETRAIN_MEMKIND_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum pt_mem_kind {
    PT_MEM_WEIGHTS = 0, /* parameters (fp32; the bf16 copy where a device keeps one) */
    PT_MEM_GRADS,       /* parameter gradients (and the tied head's separate fp32 twin gradient) */
    PT_MEM_OPTIM,       /* AdamW m and v (1/D of them with ZeRO-1) */
    PT_MEM_ACT,         /* activation slots, scratch, recomputation area, rotary tables, logit rows */
    PT_MEM_COMM,        /* link buffers: send staging, receive staging, reduction buffers */
    PT_MEM_OTHER,       /* anything allocated without a kind (pt_backend_alloc) */
    PT_MEM_KINDS        /* the number of kinds */
} pt_mem_kind;

/* The kind's name as summary.json and the plan JSON spell it: "weights", "gradients",
 * "optimizer", "activations", "communication", "other"; "?" for a value out of range. */
static inline const char *pt_mem_kind_name(int k)
{
    static const char *const names[PT_MEM_KINDS] = { "weights",     "gradients",     "optimizer",
                                                     "activations", "communication", "other" };
    return k >= 0 && k < PT_MEM_KINDS ? names[k] : "?";
}

#ifdef __cplusplus
}
#endif
#endif
