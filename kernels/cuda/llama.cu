/* kernels/cuda/llama.cu — the Llama-family layers: RMSNorm, rotary position embedding (RoPE,
 * Hugging Face's rotate-half form) and SwiGLU, with the semantics of pipetrain/backend.h.
 *  - RMSNorm forward and input gradient: one warp per row, butterfly sums (every lane gets the
 *    same bits), as layernorm.cu. The weight gradient reduces over rows with the same
 *    deterministic two-pass column sums (row blocks of pt_cuda_row_parts in a fixed order, then
 *    the blocks in order) through the stream workspace. The fused entry launches exactly the
 *    split kernels, so its bits equal theirs; the residual-fused entries run the two row kernels
 *    with their residual operand and bf16 flag set (layernorm.cu's scheme).
 *  - RoPE forward / backward: one thread per rotated pair (b, t, head, i < hs/2) of the NH query
 *    and NKV key heads, in place; the value heads are not touched.
 *  - SwiGLU forward / backward: one thread per (row, j < H).
 * No atomics anywhere: every output element is written by one thread. */
#include <math.h>

#include "cuda_internal.h"
#include "pipetrain/bf16.h"

#define PT_RMS_WARPS 8

static pt_status pt_cuda_rms_check(const char *what, int N, int C)
{
    if (N < 0 || C <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d C=%d; C must be positive and N not negative", what, N, C);
    return PT_OK;
}

/* With ra (add_rmsnorm_forward) the row is made first, as pt_k_ln_fwd (layernorm.cu) does. */
__global__ void pt_k_rms_fwd(float *out, float *rstd, float *inp, const float *w, int N, int C, float eps,
                             const float *ra, const float *rb, int rnd)
{
    int row = blockIdx.x * PT_RMS_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    float *x = inp + (size_t)row * C;
    float *y = out + (size_t)row * C;
    if (ra != NULL) {
        const float *xa = ra + (size_t)row * C, *xb = rb + (size_t)row * C;
        for (int i = lane; i < C; i += 32) {
            float v = xa[i] + xb[i];
            x[i] = rnd ? pt_bf16_round(v) : v;
        }
    }
    float ss = 0.0f;
    for (int i = lane; i < C; i += 32)
        ss += x[i] * x[i];
    float r = 1.0f / sqrtf(pt_warp_sum(ss) / (float)C + eps);
    for (int i = lane; i < C; i += 32) {
        float v = (x[i] * r) * w[i];
        y[i] = rnd ? pt_bf16_round(v) : v;
    }
    if (lane == 0)
        rstd[row] = r;
}

/* dx = r * (w dy - norm * mean(w dy norm)), norm = x r; with resid, dx [r] + resid [r]. */
__global__ void pt_k_rms_bwd_input(float *dinp, const float *dout, const float *inp, const float *w,
                                   const float *rstd, int N, int C, const float *resid, int rnd)
{
    int row = blockIdx.x * PT_RMS_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float *dx = dinp + (size_t)row * C;
    const float r = rstd[row];
    float acc = 0.0f;
    for (int i = lane; i < C; i += 32)
        acc += (w[i] * dy[i]) * (x[i] * r);
    const float mean_dn = pt_warp_sum(acc) / (float)C;
    const float *res = resid != NULL ? resid + (size_t)row * C : NULL;
    for (int i = lane; i < C; i += 32) {
        float v = (w[i] * dy[i] - (x[i] * r) * mean_dn) * r;
        if (res != NULL) {
            v = rnd ? pt_bf16_round(v) : v;
            v = v + res[i];
        }
        dx[i] = rnd ? pt_bf16_round(v) : v;
    }
}

/* Pass 1: block (x, y) sums dy * x * r over rows [y*rows, +rows) of columns [x*32, +32). */
__global__ void pt_k_rms_dw_partial(float *pw, const float *dout, const float *inp, const float *rstd, int N, int C,
                                    int rows)
{
    __shared__ float sh[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows, r1 = min(r0 + rows, N);
    float a = 0.0f;
    if (col < C)
        for (int r = r0 + threadIdx.y; r < r1; r += 8)
            a += dout[(size_t)r * C + col] * (inp[(size_t)r * C + col] * rstd[r]);
    sh[threadIdx.y][threadIdx.x] = a;
    __syncthreads();
    if (threadIdx.y == 0 && col < C) {
        int t = threadIdx.x;
        pw[(size_t)blockIdx.y * C + col] =
            ((sh[0][t] + sh[1][t]) + (sh[2][t] + sh[3][t])) + ((sh[4][t] + sh[5][t]) + (sh[6][t] + sh[7][t]));
    }
}

/* Pass 2: the row blocks in order. */
__global__ void pt_k_rms_dw_final(float *dw, const float *pw, int n_parts, int C)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= C)
        return;
    float a = 0.0f;
    for (int p = 0; p < n_parts; p++)
        a += pw[(size_t)p * C + col];
    dw[col] += a;
}

pt_status pt_cuda_rmsnorm_forward(pt_stream *s, float *out, float *rstd, const float *inp, const float *w, int N,
                                  int C, float eps)
{
    PT_CHECK(pt_cuda_rms_check("rmsnorm_forward", N, C));
    if (!(eps >= 0.0f))
        return pt_fail(PT_EINVAL, "rmsnorm_forward: eps %g; it must be a non-negative number (the model's "
                                  "rms_norm_eps)", (double)eps);
    if (N == 0)
        return PT_OK;
    pt_k_rms_fwd<<<(N + PT_RMS_WARPS - 1) / PT_RMS_WARPS, PT_RMS_WARPS * 32, 0, s->stream>>>(
        out, rstd, (float *)inp, w, N, C, eps, (const float *)NULL, (const float *)NULL, 0);
    return pt_cuda_launched("rmsnorm_forward");
}

pt_status pt_cuda_add_rmsnorm_forward(pt_stream *s, float *res, float *out, float *rstd, const float *a,
                                      const float *b, const float *w, int N, int C, float eps, int rnd)
{
    PT_CHECK(pt_cuda_rms_check("add_rmsnorm_forward", N, C));
    if (!(eps >= 0.0f))
        return pt_fail(PT_EINVAL, "add_rmsnorm_forward: eps %g; it must be a non-negative number (the model's "
                                  "rms_norm_eps)", (double)eps);
    if (N == 0)
        return PT_OK;
    pt_k_rms_fwd<<<(N + PT_RMS_WARPS - 1) / PT_RMS_WARPS, PT_RMS_WARPS * 32, 0, s->stream>>>(
        out, rstd, b != NULL ? res : (float *)a, w, N, C, eps, b != NULL ? a : (const float *)NULL, b, rnd);
    return pt_cuda_launched("add_rmsnorm_forward");
}

pt_status pt_cuda_rmsnorm_backward_input(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                         const float *w, const float *rstd, int N, int C)
{
    PT_CHECK(pt_cuda_rms_check("rmsnorm_backward_input", N, C));
    if (N == 0)
        return PT_OK;
    pt_k_rms_bwd_input<<<(N + PT_RMS_WARPS - 1) / PT_RMS_WARPS, PT_RMS_WARPS * 32, 0, s->stream>>>(
        dinp, dout, inp, w, rstd, N, C, (const float *)NULL, 0);
    return pt_cuda_launched("rmsnorm_backward_input");
}

pt_status pt_cuda_rmsnorm_backward_input_add(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                             const float *w, const float *rstd, const float *resid, int N, int C,
                                             int rnd)
{
    PT_CHECK(pt_cuda_rms_check("rmsnorm_backward_input_add", N, C));
    if (N == 0)
        return PT_OK;
    pt_k_rms_bwd_input<<<(N + PT_RMS_WARPS - 1) / PT_RMS_WARPS, PT_RMS_WARPS * 32, 0, s->stream>>>(
        dinp, dout, inp, w, rstd, N, C, resid, rnd);
    return pt_cuda_launched("rmsnorm_backward_input_add");
}

pt_status pt_cuda_rmsnorm_backward_weight(pt_stream *s, float *dw, const float *dout, const float *inp,
                                          const float *rstd, int N, int C)
{
    PT_CHECK(pt_cuda_rms_check("rmsnorm_backward_weight", N, C));
    if (N == 0)
        return PT_OK;
    int n_parts, rows;
    pt_cuda_row_parts(N, &n_parts, &rows);
    void *ws;
    PT_CHECK(pt_cuda_scratch(s, (size_t)n_parts * C * sizeof(float), "rmsnorm_backward_weight", &ws));
    float *pw = (float *)ws;
    dim3 grid((C + 31) / 32, n_parts), block(32, 8);
    pt_k_rms_dw_partial<<<grid, block, 0, s->stream>>>(pw, dout, inp, rstd, N, C, rows);
    PT_CHECK(pt_cuda_launched("rmsnorm_backward_weight"));
    pt_k_rms_dw_final<<<(C + 255) / 256, 256, 0, s->stream>>>(dw, pw, n_parts, C);
    return pt_cuda_launched("rmsnorm_backward_weight (final)");
}

pt_status pt_cuda_rmsnorm_backward(pt_stream *s, float *dinp, float *dw, const float *dout, const float *inp,
                                   const float *w, const float *rstd, int N, int C)
{
    PT_CHECK(pt_cuda_rmsnorm_backward_input(s, dinp, dout, inp, w, rstd, N, C));
    return pt_cuda_rmsnorm_backward_weight(s, dw, dout, inp, rstd, N, C);
}

/* ---- RoPE ---- */

static pt_status pt_cuda_rope_check(const char *what, int B, int T, int NH, int NKV, int hs, int pos0)
{
    if (B < 0 || T < 0 || NH <= 0 || NKV <= 0 || NKV > NH || hs <= 0 || pos0 < 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d NH=%d NKV=%d hs=%d pos0=%d; sizes must be positive, "
                                  "1 <= NKV <= NH and pos0 not negative", what, B, T, NH, NKV, hs, pos0);
    if (hs % 2 != 0)
        return pt_fail(PT_EINVAL, "%s: head size %d is odd; rotary embedding needs an even head size", what, hs);
    return PT_OK;
}

/* dir = +1: forward rotation; -1: its transpose (the backward). */
__global__ void pt_k_rope(float *qkv, const float *cosb, const float *sinb, int B, int T, int NH, int NKV, int hs,
                          int pos0, float dir)
{
    const int h2 = hs / 2, nrot = NH + NKV, W = (NH + 2 * NKV) * hs;
    const size_t n = (size_t)B * T * nrot * h2;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(e % h2);
        const size_t rest = e / h2;
        const int head = (int)(rest % nrot);
        const size_t bt = rest / nrot;
        const int t = (int)(bt % T);
        const size_t tab = (size_t)(pos0 + t) * h2 + i;
        const float c = cosb[tab], sn = dir * sinb[tab];
        float *x = qkv + bt * W + (size_t)head * hs;
        const float a = x[i], b = x[i + h2];
        x[i] = a * c - b * sn;
        x[i + h2] = b * c + a * sn;
    }
}

static pt_status pt_cuda_rope(const char *what, pt_stream *s, float *qkv, const float *cosb, const float *sinb,
                              int B, int T, int NH, int NKV, int hs, int pos0, float dir)
{
    PT_CHECK(pt_cuda_rope_check(what, B, T, NH, NKV, hs, pos0));
    size_t n = (size_t)B * T * (NH + NKV) * (hs / 2);
    if (n == 0)
        return PT_OK;
    pt_k_rope<<<pt_cuda_blocks(n, 256), 256, 0, s->stream>>>(qkv, cosb, sinb, B, T, NH, NKV, hs, pos0, dir);
    return pt_cuda_launched(what);
}

pt_status pt_cuda_rope_forward(pt_stream *s, float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                               int NKV, int hs, int pos0)
{
    return pt_cuda_rope("rope_forward", s, qkv, cos, sin, B, T, NH, NKV, hs, pos0, 1.0f);
}

pt_status pt_cuda_rope_backward(pt_stream *s, float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                                int NKV, int hs, int pos0)
{
    return pt_cuda_rope("rope_backward", s, dqkv, cos, sin, B, T, NH, NKV, hs, pos0, -1.0f);
}

/* ---- SwiGLU ---- */

__global__ void pt_k_swiglu_fwd(float *out, const float *gu, int N, int H)
{
    const size_t n = (size_t)N * H;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / H;
        const int j = (int)(e % H);
        const float g = gu[r * 2 * H + j], u = gu[r * 2 * H + H + j];
        out[e] = g / (1.0f + expf(-g)) * u;
    }
}

/* sig = 1 / (1 + exp(-g)); silu = g sig; silu' = sig (1 + g (1 - sig)). */
__global__ void pt_k_swiglu_bwd(float *dgu, const float *dout, const float *gu, int N, int H)
{
    const size_t n = (size_t)N * H;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / H;
        const int j = (int)(e % H);
        const float g = gu[r * 2 * H + j], u = gu[r * 2 * H + H + j], dy = dout[e];
        const float sig = 1.0f / (1.0f + expf(-g));
        dgu[r * 2 * H + j] = dy * u * (sig * (1.0f + g * (1.0f - sig)));
        dgu[r * 2 * H + H + j] = dy * (g * sig);
    }
}

static pt_status pt_cuda_swiglu_check(const char *what, int N, int H)
{
    if (N < 0 || H <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d H=%d; H must be positive and N not negative", what, N, H);
    return PT_OK;
}

pt_status pt_cuda_swiglu_forward(pt_stream *s, float *out, const float *gu, int N, int H)
{
    PT_CHECK(pt_cuda_swiglu_check("swiglu_forward", N, H));
    size_t n = (size_t)N * H;
    if (n == 0)
        return PT_OK;
    pt_k_swiglu_fwd<<<pt_cuda_blocks(n, 256), 256, 0, s->stream>>>(out, gu, N, H);
    return pt_cuda_launched("swiglu_forward");
}

pt_status pt_cuda_swiglu_backward(pt_stream *s, float *dgu, const float *dout, const float *gu, int N, int H)
{
    PT_CHECK(pt_cuda_swiglu_check("swiglu_backward", N, H));
    size_t n = (size_t)N * H;
    if (n == 0)
        return PT_OK;
    pt_k_swiglu_bwd<<<pt_cuda_blocks(n, 256), 256, 0, s->stream>>>(dgu, dout, gu, N, H);
    return pt_cuda_launched("swiglu_backward");
}
