/* AdamW state, gradient norms and the learning-rate schedule (pipetrain/optim.h). */
#include "pipetrain/optim.h"

#include <math.h>
#include <stdlib.h>

struct pt_optim {
    pt_model *model; /* borrowed */
    const pt_backend *be;
    pt_adamw_cfg cfg;
    size_t lo, hi; /* the moments cover elements [lo, hi) of the model's flat parameters */
    float *m, *v;  /* device, hi - lo floats each (element lo first) */
    int64_t t;
    /* The multi-tensor path (backend adamw_multi_update): one segment per tensor part in [lo, hi),
     * in tensor order, built at creation; the device copy is uploaded then (and again only if the
     * model's parameter or gradient buffer moved). multi = 0: one adamw_update per segment. */
    pt_adamw_seg *segs;     /* host, n_segs */
    pt_adamw_seg *segs_dev; /* device copy (pt_backend_alloc: PT_MEM_OTHER, so PT_MEM_OPTIM stays m and v);
                             * on a host-memory backend the host table itself (nothing allocated: the
                             * planner's memory kinds stay exact) */
    int n_segs, multi;
    size_t seg_total; /* the segments' elements (hi - lo unless tensors leave gaps in the flat buffer) */
    const float *seg_params, *seg_grads; /* the buffers segs point into */
};

static pt_status check_cfg(const pt_adamw_cfg *c)
{
    if (!(c->lr >= 0) || !isfinite(c->lr))
        return pt_fail(PT_EINVAL, "learning rate %g must be a finite number >= 0", (double)c->lr);
    if (!(c->beta1 >= 0 && c->beta1 < 1))
        return pt_fail(PT_EINVAL, "AdamW beta1 %g must be in [0, 1)", (double)c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
        return pt_fail(PT_EINVAL, "AdamW beta2 %g must be in [0, 1)", (double)c->beta2);
    if (!(c->eps > 0) || !isfinite(c->eps))
        return pt_fail(PT_EINVAL, "AdamW eps %g must be a finite number > 0", (double)c->eps);
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return pt_fail(PT_EINVAL, "weight decay %g must be a finite number >= 0", (double)c->weight_decay);
    if (isnan(c->grad_clip))
        return pt_fail(PT_EINVAL, "gradient clip is NaN; give a number (<= 0 disables clipping)");
    return PT_OK;
}

/* Fills o->segs from the model's tensors (each tensor's part within [lo, hi), tensor order, the
 * per-tensor path's weight decay rule) and uploads them when the backend has the multi-tensor op. */
static pt_status build_segs(pt_optim *o)
{
    pt_model *m = o->model;
    float *p = pt_model_params(m), *g = pt_model_grads(m);
    int n = pt_model_n_tensors(m), k = 0;
    size_t start = 0;
    for (int i = 0; i < n; i++) {
        const pt_param *pr = pt_model_tensor(m, i);
        size_t a = pr->offset > o->lo ? pr->offset : o->lo;
        size_t z = pr->offset + pr->numel < o->hi ? pr->offset + pr->numel : o->hi;
        if (a >= z)
            continue;
        o->segs[k++] = (pt_adamw_seg){ .param = p + a, .grad = g + a, .m = o->m + (a - o->lo),
                                       .v = o->v + (a - o->lo), .n = z - a, .start = start,
                                       .weight_decay = pr->decay ? o->cfg.weight_decay : 0.0f };
        start += z - a;
    }
    o->n_segs = k;
    o->seg_total = start;
    o->seg_params = p;
    o->seg_grads = g;
    if (!o->segs_dev || o->segs_dev == o->segs)
        return PT_OK;
    pt_stream *s = pt_model_stream(m);
    PT_CHECK(o->be->memcpy_h2d(s, o->segs_dev, o->segs, (size_t)(k ? k : 1) * sizeof *o->segs));
    return o->be->stream_sync(s);
}

pt_status pt_optim_create(pt_model *m, const pt_adamw_cfg *cfg, pt_optim **out)
{
    return pt_optim_create_range(m, cfg, 0, pt_model_n_params(m), out);
}

pt_status pt_optim_create_range(pt_model *m, const pt_adamw_cfg *cfg, size_t lo, size_t hi, pt_optim **out)
{
    *out = NULL;
    PT_CHECK(check_cfg(cfg));
    if (lo > hi || hi > pt_model_n_params(m))
        return pt_fail(PT_EINVAL, "optimizer slice [%zu, %zu) is not within the model's %zu parameters", lo, hi,
                       pt_model_n_params(m));
    pt_optim *o = calloc(1, sizeof *o);
    if (!o)
        return pt_fail(PT_ENOMEM, "out of memory creating the optimizer");
    o->model = m;
    o->be = pt_model_backend(m);
    o->cfg = *cfg;
    o->lo = lo;
    o->hi = hi;
    size_t bytes = (hi - lo) * sizeof(float);
    pt_status st = PT_OK;
    PT_TRY(pt_backend_alloc_kind(o->be, (void **)&o->m, bytes ? bytes : sizeof(float), PT_MEM_OPTIM), fail);
    PT_TRY(pt_backend_alloc_kind(o->be, (void **)&o->v, bytes ? bytes : sizeof(float), PT_MEM_OPTIM), fail);
    PT_TRY(o->be->memset_zero(pt_model_stream(m), o->m, bytes), fail);
    PT_TRY(o->be->memset_zero(pt_model_stream(m), o->v, bytes), fail);
    PT_TRY(o->be->stream_sync(pt_model_stream(m)), fail);
    int n_t = pt_model_n_tensors(m);
    o->segs = calloc(n_t > 0 ? (size_t)n_t : 1, sizeof *o->segs);
    if (!o->segs) {
        st = pt_fail(PT_ENOMEM, "out of host memory for the optimizer's table of %d tensors", n_t);
        goto fail;
    }
    if (o->be->adamw_multi_update) {
        if (o->be->device_memory)
            PT_TRY(pt_backend_alloc(o->be, (void **)&o->segs_dev, (n_t > 0 ? (size_t)n_t : 1) * sizeof *o->segs),
                   fail);
        else
            o->segs_dev = o->segs;
        o->multi = 1;
    }
    PT_TRY(build_segs(o), fail);
    *out = o;
    return PT_OK;
fail:
    pt_optim_destroy(o);
    return st;
}

void pt_optim_destroy(pt_optim *o)
{
    if (!o)
        return;
    if (o->segs_dev != o->segs)
        pt_backend_free(o->be, o->segs_dev);
    free(o->segs);
    pt_backend_free(o->be, o->v);
    pt_backend_free(o->be, o->m);
    free(o);
}

const pt_adamw_cfg *pt_optim_cfg(const pt_optim *o) { return &o->cfg; }
float *pt_optim_m(pt_optim *o) { return o->m; }
float *pt_optim_v(pt_optim *o) { return o->v; }
int64_t pt_optim_steps_done(const pt_optim *o) { return o->t; }
void pt_optim_set_steps_done(pt_optim *o, int64_t t) { o->t = t; }
int pt_optim_multi_tensor(const pt_optim *o) { return o->multi; }
pt_status pt_optim_set_multi_tensor(pt_optim *o, int on)
{
    if (on && !o->segs_dev)
        return pt_fail(PT_ENOTSUP, "backend '%s' has no multi-tensor AdamW (adamw_multi_update); the optimizer "
                                   "keeps one update per tensor", o->be->name);
    o->multi = on != 0;
    return PT_OK;
}
void pt_optim_range(const pt_optim *o, size_t *lo, size_t *hi)
{
    *lo = o->lo;
    *hi = o->hi;
}

pt_status pt_optim_step(pt_optim *o, float lr, float grad_scale)
{
    if (!isfinite(lr) || !isfinite(grad_scale))
        return pt_fail(PT_ENUMERIC, "optimizer step with lr %g and gradient scale %g; both must be finite",
                       (double)lr, (double)grad_scale);
    if (o->t >= INT32_MAX)
        return pt_fail(PT_EINVAL, "optimizer step counter %lld is past the backend's limit", (long long)o->t);
    pt_model *m = o->model;
    pt_stream *s = pt_model_stream(m);
    int t = (int)(o->t + 1);
    if (pt_model_params(m) != o->seg_params || pt_model_grads(m) != o->seg_grads)
        PT_CHECK(build_segs(o)); /* the model's buffers moved: the same table over the new ones */
    if (o->multi) {
        PT_CHECK(o->be->adamw_multi_update(s, o->segs_dev, o->n_segs, o->seg_total, lr, o->cfg.beta1, o->cfg.beta2,
                                           o->cfg.eps, grad_scale, t));
    } else {
        for (int k = 0; k < o->n_segs; k++) { /* each tensor's part within [lo, hi) */
            const pt_adamw_seg *sg = &o->segs[k];
            PT_CHECK(o->be->adamw_update(s, sg->param, sg->grad, sg->m, sg->v, sg->n, lr, o->cfg.beta1,
                                         o->cfg.beta2, o->cfg.eps, sg->weight_decay, grad_scale, t));
        }
    }
    o->t = t;
    return PT_OK;
}

pt_status pt_grad_sumsq(pt_model *m, double *per_tensor)
{
    const pt_backend *be = pt_model_backend(m);
    pt_stream *s = pt_model_stream(m);
    const float *g = pt_model_grads(m);
    int n = pt_model_n_tensors(m);
    for (int i = 0; i < n; i++) {
        const pt_param *pr = pt_model_tensor(m, i);
        PT_CHECK(be->sum_squares(s, &per_tensor[i], g + pr->offset, pr->numel));
    }
    return PT_OK;
}
