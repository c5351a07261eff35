/* Pure functions of the optimizer API (pipetrain/optim.h): the clip scale and the learning-rate
 * schedule. Kept apart from optim.c so that users of these need no model. */
#include <math.h>

#include "pipetrain/optim.h"

float pt_clip_scale(double global_norm, float grad_clip)
{
    if (!(grad_clip > 0))
        return 1.0f;
    double s = (double)grad_clip / (global_norm + 1e-6);
    return s < 1.0 ? (float)s : 1.0f;
}

double pt_lr_at(int64_t step, int64_t warmup, int64_t total, double lr_max, double lr_min)
{
    if (step < warmup)
        return lr_max * (double)(step + 1) / (double)warmup;
    if (step >= total || total <= warmup)
        return lr_min;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + cos(M_PI * progress));
}
