/* kernels/cpu/adamw.c — fused AdamW: one pass over param, grad, m and v.
 * Follows PyTorch's AdamW (torch.optim.AdamW, single-tensor path) operation for operation:
 *   g = grad * grad_scale
 *   param *= 1 - lr * wd                       (decoupled decay)
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g * g
 *   param -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * which is param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param) with mhat, vhat bias-corrected.
 * The scalar factors are computed in double, as Python does, then rounded to float.
 * pt_cpu_adamw_multi_update: the same on a table of segments (many tensors) in one parallel region. */
#include <math.h>
#include <omp.h>

#include "cpu_internal.h"

pt_status pt_cpu_adamw_update(pt_stream *s, float *param, const float *grad, float *m, float *v, size_t n,
                              float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                              int t)
{
    if (t < 1)
        return pt_fail(PT_EINVAL, "adamw_update: step t=%d; the first optimizer step is t=1", t);
    const float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    const float one_m_b1 = (float)(1.0 - (double)beta1), one_m_b2 = (float)(1.0 - (double)beta2);
    const float step_size = (float)((double)lr / (1.0 - pow((double)beta1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, t));
#pragma omp parallel for simd num_threads(s->n_threads) if (n >= PT_CPU_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = m[i] * beta1 + one_m_b1 * g;
        float vi = v[i] * beta2 + one_m_b2 * (g * g);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        param[i] = param[i] * decay - step_size * (mi / denom);
    }
    return PT_OK;
}

/* The segments' elements form one index space [0, total) (segment k holds [start, start + n)); each
 * of the team's threads takes an equal share of it, whatever the tensors, and walks the segments
 * its share meets. Each element gets the operations of pt_cpu_adamw_update above, in its order, with
 * the per-step factors computed by the same expressions, so the bits are those of one
 * pt_cpu_adamw_update per segment whatever the split. */
pt_status pt_cpu_adamw_multi_update(pt_stream *s, const pt_adamw_seg *segs, int n_segs, size_t total, float lr,
                                    float beta1, float beta2, float eps, float grad_scale, int t)
{
    if (t < 1)
        return pt_fail(PT_EINVAL, "adamw_multi_update: step t=%d; the first optimizer step is t=1", t);
    if (n_segs < 0 || (n_segs > 0 && segs == NULL))
        return pt_fail(PT_EINVAL, "adamw_multi_update: %d segment(s) at %p; pass a table of n_segs >= 0 entries",
                       n_segs, (const void *)segs);
    size_t sum = 0;
    for (int k = 0; k < n_segs; k++) {
        if (segs[k].start != sum)
            return pt_fail(PT_EINVAL, "adamw_multi_update: segment %d starts at element %zu, but the segments "
                                      "before it hold %zu; set each start to the sum of the n before it", k,
                           segs[k].start, sum);
        sum += segs[k].n;
    }
    if (sum != total)
        return pt_fail(PT_EINVAL, "adamw_multi_update: the segments hold %zu elements, not total=%zu", sum, total);
    const float one_m_b1 = (float)(1.0 - (double)beta1), one_m_b2 = (float)(1.0 - (double)beta2);
    const float step_size = (float)((double)lr / (1.0 - pow((double)beta1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, t));
    int nt = total >= PT_CPU_PAR_MIN ? s->n_threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = nt > 1 ? omp_get_thread_num() : 0;
        const size_t q = total / (size_t)nt, r = total % (size_t)nt; /* the first r shares are one longer */
        size_t lo = q * (size_t)tid + ((size_t)tid < r ? (size_t)tid : r);
        size_t hi = lo + q + ((size_t)tid < r ? 1 : 0);
        /* the last segment starting at or before lo (past any empty ones that share its start) */
        int k = 0;
        for (int a = 0, b = n_segs - 1; a <= b;) {
            int c = a + (b - a) / 2;
            if (segs[c].start <= lo) {
                k = c;
                a = c + 1;
            } else {
                b = c - 1;
            }
        }
        for (size_t i0 = lo; i0 < hi && k < n_segs; k++) {
            const pt_adamw_seg *sg = &segs[k];
            if (sg->start + sg->n <= i0)
                continue;
            size_t a = i0 - sg->start, z = (hi < sg->start + sg->n ? hi : sg->start + sg->n) - sg->start;
            const float decay = (float)(1.0 - (double)lr * (double)sg->weight_decay);
            float *param = sg->param, *m = sg->m, *v = sg->v;
            const float *grad = sg->grad;
#pragma omp simd
            for (size_t i = a; i < z; i++) {
                float g = grad[i] * grad_scale;
                float mi = m[i] * beta1 + one_m_b1 * g;
                float vi = v[i] * beta2 + one_m_b2 * (g * g);
                m[i] = mi;
                v[i] = vi;
                float denom = sqrtf(vi) / bc2_sqrt + eps;
                param[i] = param[i] * decay - step_size * (mi / denom);
            }
            i0 = sg->start + z;
        }
    }
    return PT_OK;
}
