/* kernels/cpu/adamw.c — fused AdamW: one pass over param, grad, m and v.
 * Follows PyTorch's AdamW (torch.optim.AdamW, single-tensor path) operation for operation:
 *   g = grad * grad_scale
 *   param *= 1 - lr * wd                       (decoupled decay)
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g * g
 *   param -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * which is param -= lr * (mhat / (sqrt(vhat) + eps) + wd * param) with mhat, vhat bias-corrected.
 * The scalar factors are computed in double, as Python does, then rounded to float. */
#include <math.h>

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
