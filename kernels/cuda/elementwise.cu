/* kernels/cuda/elementwise.cu — add, scale, sum of squares, non-finite check, GELU (tanh form),
 * AdamW. Grid-stride loops; the reductions are deterministic (fixed grid, fixed trees). */
#include <math.h>

#include "cuda_internal.h"
#include "pipetrain/bf16.h"

#define PT_EW_THREADS 256

__global__ void pt_k_add(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void pt_k_scale(float *x, float alpha, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= alpha;
}

pt_status pt_cuda_add(pt_stream *s, float *out, const float *a, const float *b, size_t n)
{
    if (n == 0)
        return PT_OK;
    pt_k_add<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(out, a, b, n);
    return pt_cuda_launched("add");
}

/* pipetrain/bf16.h's integer rounding (not __float2bfloat16_rn) so that the bits are the CPU
 * backend's by construction. */
__global__ void pt_k_round_bf16(float *out, const float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = pt_bf16_round(x[i]);
}

pt_status pt_cuda_round_bf16(pt_stream *s, float *out, const float *x, size_t n)
{
    if (n == 0)
        return PT_OK;
    pt_k_round_bf16<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(out, x, n);
    return pt_cuda_launched("round_bf16");
}

__global__ void pt_k_pack_bf16(uint16_t *dst, const float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = (uint16_t)(pt_bf16_round_bits(__float_as_uint(x[i])) >> 16);
}

pt_status pt_cuda_pack_bf16(pt_stream *s, uint16_t *dst, const float *x, size_t n)
{
    if (n == 0)
        return PT_OK;
    pt_k_pack_bf16<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(dst, x, n);
    return pt_cuda_launched("pack_bf16");
}

__global__ void pt_k_round_pack_bf16(float *x, uint16_t *packed, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint32_t b = pt_bf16_round_bits(__float_as_uint(x[i]));
        x[i] = __uint_as_float(b);
        packed[i] = (uint16_t)(b >> 16);
    }
}

pt_status pt_cuda_round_pack_bf16(pt_stream *s, float *x, uint16_t *packed, size_t n)
{
    if (n == 0)
        return PT_OK;
    pt_k_round_pack_bf16<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(x, packed, n);
    return pt_cuda_launched("round_pack_bf16");
}

__global__ void pt_k_unpack_bf16(float *out, const uint16_t *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = __uint_as_float((uint32_t)src[i] << 16);
}

pt_status pt_cuda_unpack_bf16(pt_stream *s, float *out, const uint16_t *src, size_t n)
{
    if (n == 0)
        return PT_OK;
    pt_k_unpack_bf16<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(out, src, n);
    return pt_cuda_launched("unpack_bf16");
}

/* In-place widening of n bf16 values held in the upper half of n floats. As 16-bit words, float i
 * is words [2i, 2i + 2) and its packed value word n + i. A pass widens floats [f0, f0 + h) with
 * h = floor((n - f0) / 2): it writes words below 2 (f0 + h) <= n + f0 and reads words from n + f0,
 * so no thread of a pass writes what another reads, and the words it overwrites are those of
 * floats below f0 + h, read by this pass or an earlier one. Passes halve what is left; the last
 * 4096 go in one block with a barrier between its passes, the last float by one thread (it reads
 * its word, then overwrites it). */
#define PT_UNPACK_TAIL 4096

__device__ void pt_d_unpack_range(uint16_t *w, float *f, size_t n, size_t lo, size_t hi, size_t t0, size_t step)
{
    for (size_t i = lo + t0; i < hi; i += step) {
        const uint32_t b = (uint32_t)w[n + i] << 16;
        f[i] = __uint_as_float(b);
    }
}

__global__ void pt_k_unpack_bf16_pass(float *buf, size_t n, size_t lo, size_t hi)
{
    pt_d_unpack_range((uint16_t *)buf, buf, n, lo, hi, blockIdx.x * (size_t)blockDim.x + threadIdx.x,
                      (size_t)gridDim.x * blockDim.x);
}

__global__ void pt_k_unpack_bf16_tail(float *buf, size_t n, size_t f0)
{
    while (n - f0 > 1) {
        const size_t h = (n - f0) / 2;
        pt_d_unpack_range((uint16_t *)buf, buf, n, f0, f0 + h, threadIdx.x, blockDim.x);
        __syncthreads();
        f0 += h;
    }
    if (threadIdx.x == 0 && f0 < n) {
        const uint32_t b = (uint32_t)((uint16_t *)buf)[n + f0] << 16;
        buf[f0] = __uint_as_float(b);
    }
}

pt_status pt_cuda_unpack_bf16_upper(pt_stream *s, float *buf, size_t n)
{
    size_t f0 = 0;
    while (n - f0 > PT_UNPACK_TAIL) {
        const size_t h = (n - f0) / 2;
        pt_k_unpack_bf16_pass<<<pt_cuda_blocks(h, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(buf, n, f0, f0 + h);
        PT_CHECK(pt_cuda_launched("unpack_bf16_upper"));
        f0 += h;
    }
    if (n > f0) {
        pt_k_unpack_bf16_tail<<<1, PT_EW_THREADS, 0, s->stream>>>(buf, n, f0);
        return pt_cuda_launched("unpack_bf16_upper");
    }
    return PT_OK;
}

pt_status pt_cuda_scale(pt_stream *s, float *x, float alpha, size_t n)
{
    if (n == 0)
        return PT_OK;
    pt_k_scale<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(x, alpha, n);
    return pt_cuda_launched("scale");
}

/* Sum of squares in two passes with a grid that depends on nothing but this constant: block k
 * sums elements k*256+tid, + PT_SUMSQ_BLOCKS*256, ... in a fixed order per thread, then a fixed
 * shared-memory tree; the second pass adds the block sums in a fixed tree. Same bits on every
 * run and every GPU model (the order never depends on the number of SMs). */
#define PT_SUMSQ_BLOCKS 1024
#define PT_SUMSQ_THREADS 256

__device__ double pt_block_sum_d(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w)
            sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    return sh[0];
}

__global__ void pt_k_sumsq_partial(double *partial, const float *x, size_t n)
{
    __shared__ double sh[PT_SUMSQ_THREADS];
    double acc = 0.0;
    for (size_t i = blockIdx.x * (size_t)PT_SUMSQ_THREADS + threadIdx.x; i < n;
         i += (size_t)PT_SUMSQ_BLOCKS * PT_SUMSQ_THREADS) {
        double v = (double)x[i];
        acc += v * v;
    }
    double total = pt_block_sum_d(acc, sh);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = total;
}

__global__ void pt_k_sumsq_final(double *out, const double *partial, int nb)
{
    __shared__ double sh[PT_SUMSQ_THREADS];
    double acc = 0.0;
    for (int i = threadIdx.x; i < nb; i += PT_SUMSQ_THREADS)
        acc += partial[i];
    double total = pt_block_sum_d(acc, sh);
    if (threadIdx.x == 0)
        *out = total;
}

pt_status pt_cuda_sum_squares(pt_stream *s, double *out, const float *x, size_t n)
{
    void *ws;
    PT_CHECK(pt_cuda_scratch(s, (PT_SUMSQ_BLOCKS + 1) * sizeof(double), "sum_squares", &ws));
    double *partial = (double *)ws, *result = partial + PT_SUMSQ_BLOCKS;
    /* Blocks past the last element would sum nothing: they are left out, and the second pass adds
     * only the nb block sums (the missing ones were +0.0, and x + 0.0 == x for the non-negative
     * sums here, so the bits are those of the full grid). The stride stays the full grid's. */
    size_t need = (n + PT_SUMSQ_THREADS - 1) / PT_SUMSQ_THREADS;
    int nb = need < 1 ? 1 : need < PT_SUMSQ_BLOCKS ? (int)need : PT_SUMSQ_BLOCKS;
    pt_k_sumsq_partial<<<nb, PT_SUMSQ_THREADS, 0, s->stream>>>(partial, x, n);
    PT_CHECK(pt_cuda_launched("sum_squares"));
    pt_k_sumsq_final<<<1, PT_SUMSQ_THREADS, 0, s->stream>>>(result, partial, nb);
    PT_CHECK(pt_cuda_launched("sum_squares (final)"));
    PT_CUDA_CHECK(cudaMemcpyAsync(s->host_double, result, sizeof(double), cudaMemcpyDeviceToHost, s->stream),
                  "sum_squares copy to host");
    PT_CUDA_CHECK(cudaStreamSynchronize(s->stream), "sum_squares (stream synchronise)");
    *out = *s->host_double;
    return PT_OK;
}

/* NaN and Inf are exactly the floats with all exponent bits set. Any thread that sees one
 * writes 1 (all writers write the same value, so the result does not depend on order). */
__global__ void pt_k_nonfinite(int *flag, const float *x, size_t n)
{
    int bad = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        bad |= (__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u;
    if (__syncthreads_or(bad) && threadIdx.x == 0)
        *flag = 1;
}

pt_status pt_cuda_has_nonfinite(pt_stream *s, int *out, const float *x, size_t n)
{
    void *ws;
    PT_CHECK(pt_cuda_scratch(s, sizeof(int), "has_nonfinite", &ws));
    int *flag = (int *)ws;
    PT_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), s->stream), "has_nonfinite memset");
    if (n > 0) {
        pt_k_nonfinite<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(flag, x, n);
        PT_CHECK(pt_cuda_launched("has_nonfinite"));
    }
    PT_CUDA_CHECK(cudaMemcpyAsync(s->host_int, flag, sizeof(int), cudaMemcpyDeviceToHost, s->stream),
                  "has_nonfinite copy to host");
    PT_CUDA_CHECK(cudaStreamSynchronize(s->stream), "has_nonfinite (stream synchronise)");
    *out = *s->host_int != 0;
    return PT_OK;
}

#define PT_GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define PT_GELU_A 0.044715f

__device__ static inline float pt_gelu(float x)
{
    float u = PT_GELU_K * (x + PT_GELU_A * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

__global__ void pt_k_gelu_fwd(float *out, const float *inp, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = pt_gelu(inp[i]);
}

/* bias_gelu_forward: x (N,F) += bias [r] in place, out = gelu(x) [r]: one read of x, two writes. */
__global__ void pt_k_bias_gelu_fwd(float *x, float *out, const float *bias, size_t n, int F, int rnd)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        if (bias != NULL)
            v = v + bias[i % (size_t)F];
        v = rnd ? pt_bf16_round(v) : v;
        x[i] = v;
        float g = pt_gelu(v);
        out[i] = rnd ? pt_bf16_round(g) : g;
    }
}

/* With rnd (gelu_backward_round), dout is rounded before and the gradient after. */
__global__ void pt_k_gelu_bwd(float *dinp, const float *inp, const float *dout, size_t n, int rnd)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = inp[i];
        float u = PT_GELU_K * (x + PT_GELU_A * x * x * x);
        float th = tanhf(u);
        float sech2 = 1.0f - th * th;
        float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * PT_GELU_K * (1.0f + 3.0f * PT_GELU_A * x * x);
        float d = rnd ? pt_bf16_round(dout[i]) : dout[i];
        float v = local * d;
        dinp[i] = rnd ? pt_bf16_round(v) : v;
    }
}

pt_status pt_cuda_gelu_forward(pt_stream *s, float *out, const float *inp, size_t n)
{
    if (n == 0)
        return PT_OK;
    pt_k_gelu_fwd<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(out, inp, n);
    return pt_cuda_launched("gelu_forward");
}

pt_status pt_cuda_bias_gelu_forward(pt_stream *s, float *x, float *out, const float *bias, int N, int F, int rnd)
{
    if (N < 0 || F <= 0)
        return pt_fail(PT_EINVAL, "bias_gelu_forward: shape N=%d F=%d; F must be positive and N not negative", N, F);
    size_t n = (size_t)N * F;
    if (n == 0)
        return PT_OK;
    pt_k_bias_gelu_fwd<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(x, out, bias, n, F, rnd);
    return pt_cuda_launched("bias_gelu_forward");
}

pt_status pt_cuda_gelu_backward(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n)
{
    return pt_cuda_gelu_backward_round(s, dinp, inp, dout, n, 0);
}

pt_status pt_cuda_gelu_backward_round(pt_stream *s, float *dinp, const float *inp, const float *dout, size_t n,
                                      int rnd)
{
    if (n == 0)
        return PT_OK;
    pt_k_gelu_bwd<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(dinp, inp, dout, n, rnd);
    return pt_cuda_launched(rnd ? "gelu_backward_round" : "gelu_backward");
}

/* AdamW, operation for operation as kernels/cpu/adamw.c (PyTorch's single-tensor AdamW); the
 * scalar factors are computed on the host in double and rounded to float, as there. One element,
 * shared by the per-tensor and the multi-tensor kernel so both compile to the same arithmetic. */
__device__ __forceinline__ void pt_adamw_elem(float *param, const float *grad, float *m, float *v, size_t i,
                                              float decay, float beta1, float beta2, float one_m_b1,
                                              float one_m_b2, float step_size, float bc2_sqrt, float eps,
                                              float grad_scale)
{
    float g = grad[i] * grad_scale;
    float mi = m[i] * beta1 + one_m_b1 * g;
    float vi = v[i] * beta2 + one_m_b2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / bc2_sqrt + eps;
    param[i] = param[i] * decay - step_size * (mi / denom);
}

__global__ void pt_k_adamw(float *param, const float *grad, float *m, float *v, size_t n, float decay,
                           float beta1, float beta2, float one_m_b1, float one_m_b2, float step_size,
                           float bc2_sqrt, float eps, float grad_scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        pt_adamw_elem(param, grad, m, v, i, decay, beta1, beta2, one_m_b1, one_m_b2, step_size, bc2_sqrt, eps,
                      grad_scale);
}

/* 1 - lr * wd in double, then to float, as the host computes adamw_update's decay: the product is
 * rounded by itself (__dmul_rn is never fused into an FMA), so the device gets the host's bits. */
__device__ __forceinline__ float pt_adamw_decay(float lr, float wd)
{
#ifdef __CUDA_ARCH__
    return (float)(1.0 - __dmul_rn((double)lr, (double)wd));
#else
    return (float)(1.0 - (double)lr * (double)wd);
#endif
}

/* Multi-tensor AdamW: the segments' elements are one index space [0, total), cut into chunks of
 * PT_ADAMW_CHUNK consecutive elements; a block takes chunks blockIdx.x, blockIdx.x + gridDim.x, ...
 * and, for each, finds the segment holding the chunk's first element by binary search over the
 * starts (every thread the same, so the reads are broadcasts), then walks the segments the chunk
 * meets, its threads on consecutive elements. */
#define PT_ADAMW_CHUNK 4096
__global__ void pt_k_adamw_multi(const pt_adamw_seg *segs, int n_segs, size_t total, float lr, float beta1,
                                 float beta2, float one_m_b1, float one_m_b2, float step_size, float bc2_sqrt,
                                 float eps, float grad_scale)
{
    const size_t n_chunks = (total + PT_ADAMW_CHUNK - 1) / PT_ADAMW_CHUNK;
    for (size_t c = blockIdx.x; c < n_chunks; c += gridDim.x) {
        const size_t c0 = c * PT_ADAMW_CHUNK, c1 = c0 + PT_ADAMW_CHUNK < total ? c0 + PT_ADAMW_CHUNK : total;
        int k = 0; /* the last segment starting at or before c0 (past empty ones sharing its start) */
        for (int a = 0, b = n_segs - 1; a <= b;) {
            int mid = a + (b - a) / 2;
            if (segs[mid].start <= c0) {
                k = mid;
                a = mid + 1;
            } else {
                b = mid - 1;
            }
        }
        for (size_t i0 = c0; i0 < c1 && k < n_segs; k++) {
            const pt_adamw_seg sg = segs[k];
            if (sg.start + sg.n <= i0)
                continue;
            const size_t z = (c1 < sg.start + sg.n ? c1 : sg.start + sg.n) - sg.start;
            const float decay = pt_adamw_decay(lr, sg.weight_decay);
            for (size_t i = i0 - sg.start + threadIdx.x; i < z; i += blockDim.x)
                pt_adamw_elem(sg.param, sg.grad, sg.m, sg.v, i, decay, beta1, beta2, one_m_b1, one_m_b2, step_size,
                              bc2_sqrt, eps, grad_scale);
            i0 = sg.start + z;
        }
    }
}

pt_status pt_cuda_adamw_update(pt_stream *s, float *param, const float *grad, float *m, float *v, size_t n,
                               float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                               int t)
{
    if (t < 1)
        return pt_fail(PT_EINVAL, "adamw_update: step t=%d; the first optimizer step is t=1", t);
    if (n == 0)
        return PT_OK;
    const float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    const float one_m_b1 = (float)(1.0 - (double)beta1), one_m_b2 = (float)(1.0 - (double)beta2);
    const float step_size = (float)((double)lr / (1.0 - pow((double)beta1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, t));
    pt_k_adamw<<<pt_cuda_blocks(n, PT_EW_THREADS), PT_EW_THREADS, 0, s->stream>>>(
        param, grad, m, v, n, decay, beta1, beta2, one_m_b1, one_m_b2, step_size, bc2_sqrt, eps, grad_scale);
    return pt_cuda_launched("adamw_update");
}

pt_status pt_cuda_adamw_multi_update(pt_stream *s, const pt_adamw_seg *segs, int n_segs, size_t total, float lr,
                                     float beta1, float beta2, float eps, float grad_scale, int t)
{
    if (t < 1)
        return pt_fail(PT_EINVAL, "adamw_multi_update: step t=%d; the first optimizer step is t=1", t);
    if (n_segs < 0 || (n_segs > 0 && segs == NULL))
        return pt_fail(PT_EINVAL, "adamw_multi_update: %d segment(s) at %p; pass a device table of n_segs >= 0 "
                                  "entries", n_segs, (const void *)segs);
    if (total == 0 || n_segs == 0)
        return PT_OK;
    const float one_m_b1 = (float)(1.0 - (double)beta1), one_m_b2 = (float)(1.0 - (double)beta2);
    const float step_size = (float)((double)lr / (1.0 - pow((double)beta1, t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, t));
    pt_k_adamw_multi<<<pt_cuda_blocks((total + PT_ADAMW_CHUNK - 1) / PT_ADAMW_CHUNK, 1), PT_EW_THREADS, 0,
                       s->stream>>>(segs, n_segs, total, lr, beta1, beta2, one_m_b1, one_m_b2, step_size, bc2_sqrt,
                                    eps, grad_scale);
    return pt_cuda_launched("adamw_multi_update");
}
