/* kernels/cpu/crossentropy.c — softmax + cross-entropy over the vocabulary, row-parallel.
 * A row's loss is log(sum exp(x - max)) + max - x[target]. Each row takes three passes (max;
 * exp written to probs while summing; scale by 1/sum): one exp per element, and a row of a
 * 50257-word vocabulary (200 KB) stays in L2 after the first pass. probs may alias logits.
 * Targets < 0 are ignored (loss 0, gradient row 0); a target >= V is refused before anything
 * is written. */
#include <math.h>

#include "cpu_internal.h"

static pt_status pt_cpu_ce_check(const char *what, const int32_t *targets, int N, int V)
{
    if (N < 0 || V <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d V=%d; V must be positive and N not negative", what, N, V);
    for (int i = 0; i < N; i++)
        if (targets[i] >= V)
            return pt_fail(PT_EINVAL, "%s: target %d at row %d is outside the vocabulary of %d; check the data "
                                      "and the model's vocab size", what, targets[i], i, V);
    return PT_OK;
}

pt_status pt_cpu_crossentropy_forward(pt_stream *s, float *losses, float *probs, const float *logits,
                                      const int32_t *targets, int N, int V)
{
    PT_CHECK(pt_cpu_ce_check("crossentropy_forward", targets, N, V));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * V >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int i = 0; i < V; i++)
            mx = x[i] > mx ? x[i] : mx;
        int32_t tgt = targets[n];
        float x_tgt = tgt >= 0 ? x[tgt] : 0.0f; /* read before p (which may be x) is written */
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) {
            float e = pt_cpu_expf(x[i] - mx);
            p[i] = e;
            sum += e;
        }
        losses[n] = tgt >= 0 ? logf(sum) + mx - x_tgt : 0.0f;
        float inv = 1.0f / sum;
#pragma omp simd
        for (int i = 0; i < V; i++)
            p[i] *= inv;
    }
    return PT_OK;
}

pt_status pt_cpu_crossentropy_backward(pt_stream *s, float *dlogits, const float *probs, const int32_t *targets,
                                       float dloss, int N, int V)
{
    PT_CHECK(pt_cpu_ce_check("crossentropy_backward", targets, N, V));
#pragma omp parallel for num_threads(s->n_threads) if ((size_t)N * V >= PT_CPU_PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        int32_t tgt = targets[n];
        if (tgt < 0) {
#pragma omp simd
            for (int i = 0; i < V; i++)
                d[i] = 0.0f;
            continue;
        }
        float p_tgt = p[tgt];
#pragma omp simd
        for (int i = 0; i < V; i++)
            d[i] = dloss * p[i];
        d[tgt] = dloss * (p_tgt - 1.0f);
    }
    return PT_OK;
}
