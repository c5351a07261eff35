/* pipetrain/optim.h — AdamW optimizer state for one pt_model, gradient norms for clipping, and the
 * learning-rate schedule (linear warmup, then cosine decay).
 *
 * The moments m and v live in two flat device buffers laid out exactly like pt_model_params, so a
 * checkpoint can save them by the model's tensor names and offsets.
 *
 *     pt_adamw_cfg ac = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
 *                         .weight_decay = 0.1f, .grad_clip = 1.0f };
 *     pt_optim *o;
 *     PT_CHECK(pt_optim_create(model, &ac, &o));
 *     // after the backward passes and pt_model_reduce_tied_grads:
 *     double ss[n_tensors], total = 0;
 *     PT_CHECK(pt_grad_sumsq(model, ss));
 *     for (int i = 0; i < n_tensors; i++) total += ss[i];
 *     float clip = pt_clip_scale(sqrt(total), ac.grad_clip);
 *     PT_CHECK(pt_optim_step(o, (float)pt_lr_at(step, warmup, steps, ac.lr, ac.lr / 10), clip));
 *     pt_optim_destroy(o);
 *
 * Global gradient norm rule (a pipeline matches one process bit for bit): sum the per-tensor sums of
 * squares in GLOBAL tensor order (embedding, blocks, head), counting wte.weight once (the embedding's
 * copy, after the tied reduction; a head-only chunk's wte.weight copy is skipped), norm = sqrt(total)
 * in double.
 *
 * Thread-safety: a pt_optim is used by one thread at a time, together with its model.
 */
#ifndef PIPETRAIN_OPTIM_H
#define PIPETRAIN_OPTIM_H

#include <stdint.h>

#include "pipetrain/model.h"
#include "pipetrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pt_adamw_cfg {
    float lr;           /* peak learning rate (pt_optim_step takes the scheduled one) */
    float beta1, beta2; /* moment decay rates, in [0, 1) */
    float eps;          /* added to sqrt(v_hat) */
    float weight_decay; /* decoupled decay, applied only to tensors with pt_param.decay */
    float grad_clip;    /* global-norm clip threshold; <= 0 disables clipping */
} pt_adamw_cfg;

/* AdamW moments (m, v) for one pt_model, in device memory. */
typedef struct pt_optim pt_optim;

/* Allocates zeroed moments for every parameter of `m` (borrowed; must outlive the optimizer) through
 * pt_backend_alloc. Steps done starts at 0. PT_EINVAL for out-of-range hyper-parameters (naming
 * the field), PT_ENOMEM when the moments do not fit. Blocks until the moments are zeroed. */
pt_status pt_optim_create(pt_model *m, const pt_adamw_cfg *cfg, pt_optim **out);
/* The same for a slice: moments for elements [lo, hi) of the model's flat parameters only (ZeRO-1:
 * each data-parallel replica updates its own segment, pt_comm_segment); pt_optim_step updates
 * only those elements. pt_optim_create is the slice [0, pt_model_n_params). PT_EINVAL when the
 * slice is not within the parameters. */
pt_status pt_optim_create_range(pt_model *m, const pt_adamw_cfg *cfg, size_t lo, size_t hi, pt_optim **out);
/* Frees the moments. Accepts NULL. */
void pt_optim_destroy(pt_optim *o);

/* The hyper-parameters given at creation (borrowed from the optimizer). */
const pt_adamw_cfg *pt_optim_cfg(const pt_optim *o);

/* Flat device buffers of hi - lo floats (pt_optim_range; the whole model unless made by
 * pt_optim_create_range), laid out like pt_model_params from element lo; owned by the optimizer
 * (checkpoints read and write them in place). */
float *pt_optim_m(pt_optim *o);
float *pt_optim_v(pt_optim *o);

/* Optimizer steps applied so far (the bias-correction counter). Set it when resuming. */
int64_t pt_optim_steps_done(const pt_optim *o);
void pt_optim_set_steps_done(pt_optim *o, int64_t t);
/* Whether pt_optim_step updates every tensor in one backend call (1: adamw_multi_update over the
 * table of tensor parts made at creation; the default where the backend has that op) or one
 * adamw_update per tensor (0). Both give the same bits. Setting 1 on a backend without the op is
 * PT_ENOTSUP (the optimizer stays per-tensor). */
int pt_optim_multi_tensor(const pt_optim *o);
pt_status pt_optim_set_multi_tensor(pt_optim *o, int on);

/* The slice of the model's flat parameters the moments cover: [*lo, *hi). */
void pt_optim_range(const pt_optim *o, size_t *lo, size_t *hi);

/* One AdamW step on every tensor of the model (on the slice's elements of them), in place, through the backend's fused update (one
 * pass over parameter, gradient and both moments; all tensors in one call, pt_optim_multi_tensor): gradients are multiplied by `grad_scale` (the clip
 * scale) first; weight decay applies only where pt_param.decay. Increments steps done. Queued on the
 * model's stream (asynchronous on CUDA). Does not allocate. */
pt_status pt_optim_step(pt_optim *o, float lr, float grad_scale);

/* Per-tensor sum of squares of the model's gradients, in double, in the model's tensor order
 * (per_tensor: host array of pt_model_n_tensors(m) doubles). Synchronises. Does not allocate. */
pt_status pt_grad_sumsq(pt_model *m, double *per_tensor);

/* Clip scale from a global norm: min(1, grad_clip / (norm + 1e-6)); 1 when grad_clip <= 0.
 * Pure function. */
float pt_clip_scale(double global_norm, float grad_clip);

/* Learning rate at `step` (0-based): linear warmup over the first `warmup` steps
 * ((step + 1) / warmup * lr_max), then cosine decay from lr_max at step `warmup` to
 * lr_min at step `total` (and lr_min after it). Pure function. */
double pt_lr_at(int64_t step, int64_t warmup, int64_t total, double lr_max, double lr_min);

#ifdef __cplusplus
}
#endif
#endif
