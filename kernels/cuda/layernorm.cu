/* kernels/cuda/layernorm.cu — layernorm over the last dim (eps 1e-5), forward and backward.
 * Forward and the input gradient: one warp per row (rows are independent; a warp's butterfly
 * sums give every lane the same bits). Weight gradients reduce over rows: deterministic two-pass
 * column sums through the stream workspace (row blocks in a fixed order, see pt_cuda_row_parts). The fused entry
 * launches exactly the split kernels, so its bits equal theirs. The residual-fused entries run
 * the same two row kernels with their residual operand and bf16 flag set: the add, the norm and
 * the roundings in one read and one write of each row, with the split sequence's bits. */
#include "cuda_internal.h"
#include "pipetrain/bf16.h"

#define PT_LN_EPS 1e-5f
#define PT_LN_WARPS 8

static pt_status pt_cuda_ln_check(const char *what, int N, int C)
{
    if (N < 0 || C <= 0)
        return pt_fail(PT_EINVAL, "%s: shape N=%d C=%d; C must be positive and N not negative", what, N, C);
    return PT_OK;
}

/* One warp per row. With ra (add_layernorm_forward) the row is made first, inp[i] = ra[i] +
 * rb[i] (rounded when rnd; each lane re-reads only what it wrote); the plain entry passes its
 * const input with ra NULL, and nothing is written to it. With rnd the output is rounded. */
__global__ void pt_k_ln_fwd(float *out, float *mean, float *rstd, float *inp, const float *w, const float *b, int N,
                            int C, const float *ra, const float *rb, int rnd)
{
    int row = blockIdx.x * PT_LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
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
    float sum = 0.0f;
    for (int i = lane; i < C; i += 32)
        sum += x[i];
    float m = pt_warp_sum(sum) / (float)C;
    float var = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float d = x[i] - m;
        var += d * d;
    }
    float r = 1.0f / sqrtf(pt_warp_sum(var) / (float)C + PT_LN_EPS);
    for (int i = lane; i < C; i += 32) {
        float v = (x[i] - m) * r * w[i] + b[i];
        y[i] = rnd ? pt_bf16_round(v) : v;
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

/* With resid (layernorm_backward_input_add): dx [r] + resid [r]. */
__global__ void pt_k_ln_bwd_input(float *dinp, const float *dout, const float *inp, const float *w,
                                  const float *mean, const float *rstd, int N, int C, const float *resid, int rnd)
{
    int row = blockIdx.x * PT_LN_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N)
        return;
    const float *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float *dx = dinp + (size_t)row * C;
    float m = mean[row], r = rstd[row];
    float sum_d = 0.0f, sum_dn = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float dnorm = w[i] * dy[i];
        sum_d += dnorm;
        sum_dn += dnorm * ((x[i] - m) * r);
    }
    float mean_d = pt_warp_sum(sum_d) / (float)C, mean_dn = pt_warp_sum(sum_dn) / (float)C;
    const float *res = resid != NULL ? resid + (size_t)row * C : NULL;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * r;
        float v = (w[i] * dy[i] - mean_d - norm * mean_dn) * r;
        if (res != NULL) {
            v = rnd ? pt_bf16_round(v) : v;
            v = v + res[i];
        }
        dx[i] = rnd ? pt_bf16_round(v) : v;
    }
}

/* Pass 1: block (x, y) sums dy*norm and dy over rows [y*rows, +rows) of columns [x*32, +32). */
__global__ void pt_k_ln_dw_partial(float *pw, float *pb, const float *dout, const float *inp, const float *mean,
                                   const float *rstd, int N, int C, int rows)
{
    __shared__ float shw[8][33], shb[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * rows, r1 = min(r0 + rows, N);
    float aw = 0.0f, ab = 0.0f;
    if (col < C)
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            float dy = dout[(size_t)r * C + col];
            aw += dy * ((inp[(size_t)r * C + col] - mean[r]) * rstd[r]);
            ab += dy;
        }
    shw[threadIdx.y][threadIdx.x] = aw;
    shb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && col < C) {
        int t = threadIdx.x;
        pw[(size_t)blockIdx.y * C + col] =
            ((shw[0][t] + shw[1][t]) + (shw[2][t] + shw[3][t])) + ((shw[4][t] + shw[5][t]) + (shw[6][t] + shw[7][t]));
        pb[(size_t)blockIdx.y * C + col] =
            ((shb[0][t] + shb[1][t]) + (shb[2][t] + shb[3][t])) + ((shb[4][t] + shb[5][t]) + (shb[6][t] + shb[7][t]));
    }
}

__global__ void pt_k_ln_dw_final(float *dw, float *db, const float *pw, const float *pb, int n_parts, int C)
{
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= C)
        return;
    float aw = 0.0f, ab = 0.0f;
    for (int p = 0; p < n_parts; p++) {
        aw += pw[(size_t)p * C + col];
        ab += pb[(size_t)p * C + col];
    }
    dw[col] += aw;
    db[col] += ab;
}

pt_status pt_cuda_layernorm_forward(pt_stream *s, float *out, float *mean, float *rstd, const float *inp,
                                    const float *w, const float *b, int N, int C)
{
    PT_CHECK(pt_cuda_ln_check("layernorm_forward", N, C));
    if (N == 0)
        return PT_OK;
    pt_k_ln_fwd<<<(N + PT_LN_WARPS - 1) / PT_LN_WARPS, PT_LN_WARPS * 32, 0, s->stream>>>(
        out, mean, rstd, (float *)inp, w, b, N, C, (const float *)NULL, (const float *)NULL, 0);
    return pt_cuda_launched("layernorm_forward");
}

pt_status pt_cuda_add_layernorm_forward(pt_stream *s, float *res, float *out, float *mean, float *rstd,
                                        const float *a, const float *b, const float *w, const float *bias, int N,
                                        int C, int rnd)
{
    PT_CHECK(pt_cuda_ln_check("add_layernorm_forward", N, C));
    if (N == 0)
        return PT_OK;
    /* b NULL: the norm of a itself (the kernel writes its input only when given ra) */
    pt_k_ln_fwd<<<(N + PT_LN_WARPS - 1) / PT_LN_WARPS, PT_LN_WARPS * 32, 0, s->stream>>>(
        out, mean, rstd, b != NULL ? res : (float *)a, w, bias, N, C, b != NULL ? a : (const float *)NULL, b, rnd);
    return pt_cuda_launched("add_layernorm_forward");
}

pt_status pt_cuda_layernorm_backward_input(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                           const float *w, const float *mean, const float *rstd, int N, int C)
{
    PT_CHECK(pt_cuda_ln_check("layernorm_backward_input", N, C));
    if (N == 0)
        return PT_OK;
    pt_k_ln_bwd_input<<<(N + PT_LN_WARPS - 1) / PT_LN_WARPS, PT_LN_WARPS * 32, 0, s->stream>>>(
        dinp, dout, inp, w, mean, rstd, N, C, (const float *)NULL, 0);
    return pt_cuda_launched("layernorm_backward_input");
}

pt_status pt_cuda_layernorm_backward_input_add(pt_stream *s, float *dinp, const float *dout, const float *inp,
                                               const float *w, const float *mean, const float *rstd,
                                               const float *resid, int N, int C, int rnd)
{
    PT_CHECK(pt_cuda_ln_check("layernorm_backward_input_add", N, C));
    if (N == 0)
        return PT_OK;
    pt_k_ln_bwd_input<<<(N + PT_LN_WARPS - 1) / PT_LN_WARPS, PT_LN_WARPS * 32, 0, s->stream>>>(
        dinp, dout, inp, w, mean, rstd, N, C, resid, rnd);
    return pt_cuda_launched("layernorm_backward_input_add");
}

pt_status pt_cuda_layernorm_backward_weight(pt_stream *s, float *dw, float *db, const float *dout, const float *inp,
                                            const float *mean, const float *rstd, int N, int C)
{
    PT_CHECK(pt_cuda_ln_check("layernorm_backward_weight", N, C));
    if (N == 0)
        return PT_OK;
    int n_parts, rows;
    pt_cuda_row_parts(N, &n_parts, &rows);
    void *ws;
    PT_CHECK(pt_cuda_scratch(s, 2 * (size_t)n_parts * C * sizeof(float), "layernorm_backward_weight", &ws));
    float *pw = (float *)ws, *pb = pw + (size_t)n_parts * C;
    dim3 grid((C + 31) / 32, n_parts), block(32, 8);
    pt_k_ln_dw_partial<<<grid, block, 0, s->stream>>>(pw, pb, dout, inp, mean, rstd, N, C, rows);
    PT_CHECK(pt_cuda_launched("layernorm_backward_weight"));
    pt_k_ln_dw_final<<<(C + 255) / 256, 256, 0, s->stream>>>(dw, db, pw, pb, n_parts, C);
    return pt_cuda_launched("layernorm_backward_weight (final)");
}

pt_status pt_cuda_layernorm_backward(pt_stream *s, float *dinp, float *dw, float *db, const float *dout,
                                     const float *inp, const float *w, const float *mean, const float *rstd, int N,
                                     int C)
{
    PT_CHECK(pt_cuda_layernorm_backward_input(s, dinp, dout, inp, w, mean, rstd, N, C));
    return pt_cuda_layernorm_backward_weight(s, dw, db, dout, inp, mean, rstd, N, C);
}
