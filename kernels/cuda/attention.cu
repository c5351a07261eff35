/* kernels/cuda/attention.cu — causal multi-head self-attention, scale 1/sqrt(C/NH), flash style:
 * no (T,T) matrix ever reaches global memory. Like the CPU backend, the forward keeps only the
 * log-sum-exp of each softmax row, saved = (B,NH,T) floats, and the backward recomputes the
 * probabilities from Q, K and it.
 *
 * Layout of the work: a block is 8 warps; a warp owns one row (a query in the forward and the
 * dQ pass, a key in the dK/dV pass). The block stages tiles of 32 rows of the other side (keys,
 * or queries) in shared memory; inside a tile, lane l takes row l of the tile for the dot
 * products (rows padded to hs+1 floats, so the 32 lanes hit 32 banks), and then each lane owns
 * the head dimensions d = lane, lane+32, ... of the accumulators, with the tile's weights
 * broadcast by shuffles. Head size hs = C/NH up to 128 (GPT-2 uses 64).
 *   forward   online softmax over key tiles: m, l per query; O = sum_j p_j V_j / l; lse = m + log l
 *   dQ pass   D_t = dO_t . O_t (also written to scratch), p = exp(s - lse), dp = dO_t . V_j,
 *             ds = p (dp - D_t), dQ_t = scale sum_j ds_j K_j
 *   dK,dV     per key j over query tiles t >= j: dV_j = sum_t p dO_t, dK_j = scale sum_t ds Q_t
 * Every sum runs in a fixed order (tiles ascending, lanes by shuffle order), so results are
 * deterministic; dQ, dK and dV are each written by one warp (no atomics), which is why the
 * backward computes the scores twice (once per pass). Scratch: D, (B,NH,T) floats. */
#include <math.h>

#include "cuda_internal.h"

#define PT_ATT_WARPS 8
#define PT_ATT_TILE 32
#define PT_ATT_HS_MAX 128
#define PT_ATT_PER_LANE (PT_ATT_HS_MAX / 32)

size_t pt_cuda_attention_saved_size(int B, int T, int C, int NH)
{
    (void)C;
    return (size_t)B * NH * T;
}

size_t pt_cuda_attention_scratch_size(int B, int T, int C, int NH)
{
    (void)C;
    return (size_t)B * NH * T;
}

static pt_status pt_cuda_att_check(const char *what, int B, int T, int C, int NH)
{
    if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d C=%d NH=%d; sizes must be positive and NH must divide C",
                       what, B, T, C, NH);
    if (C / NH > PT_ATT_HS_MAX)
        return pt_fail(PT_ENOTSUP, "%s: head size %d (C=%d / NH=%d) is above the CUDA kernel's %d; use more heads",
                       what, C / NH, C, NH, PT_ATT_HS_MAX);
    return PT_OK;
}

/* Dot product of a[0..hs) with b[0..hs) (both shared memory), sequential. */
__device__ __forceinline__ float pt_att_dot(const float *a, const float *b, int hs)
{
    float acc = 0.0f;
    for (int d = 0; d < hs; d++)
        acc += a[d] * b[d];
    return acc;
}

__global__ void pt_k_att_fwd(float *out, float *lse, const float *qkv, int T, int C, int NH, float scale)
{
    extern __shared__ float sm[];
    const int hs = C / NH, ld = 3 * C, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int t0 = blockIdx.x * PT_ATT_WARPS, t = t0 + warp;
    const bool valid = t < T;
    float *Ks = sm;                               /* [32][hs+1] */
    float *Vs = Ks + PT_ATT_TILE * (hs + 1);      /* [32][hs] */
    float *qs = Vs + PT_ATT_TILE * hs + warp * hs; /* [8][hs] */
    const float *base = qkv + (size_t)b * T * ld + (size_t)h * hs;
    if (valid)
        for (int d = lane; d < hs; d += 32)
            qs[d] = base[(size_t)t * ld + d];
    float m = -INFINITY, l = 0.0f, o[PT_ATT_PER_LANE];
#pragma unroll
    for (int k = 0; k < PT_ATT_PER_LANE; k++)
        o[k] = 0.0f;
    const int kend = min(t0 + PT_ATT_WARPS, T);
    for (int k0 = 0; k0 < kend; k0 += PT_ATT_TILE) {
        __syncthreads();
        for (int i = threadIdx.x; i < PT_ATT_TILE * hs; i += blockDim.x) {
            int r = i / hs, d = i % hs, j = k0 + r;
            const float *row = base + (size_t)j * ld;
            Ks[r * (hs + 1) + d] = j < T ? row[C + d] : 0.0f;
            Vs[r * hs + d] = j < T ? row[2 * C + d] : 0.0f;
        }
        __syncthreads();
        if (!valid || k0 > t)
            continue;
        const int j = k0 + lane;
        float sc = j <= t ? scale * pt_att_dot(qs, Ks + lane * (hs + 1), hs) : -INFINITY;
        float m_new = fmaxf(m, pt_warp_max(sc));
        float corr = expf(m - m_new);
        float p = j <= t ? expf(sc - m_new) : 0.0f;
        l = l * corr + pt_warp_sum(p);
        const int n_keys = min(PT_ATT_TILE, t - k0 + 1);
#pragma unroll
        for (int k = 0; k < PT_ATT_PER_LANE; k++)
            o[k] *= corr;
        for (int jj = 0; jj < n_keys; jj++) {
            float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
            for (int k = 0; k < PT_ATT_PER_LANE; k++) {
                int d = lane + 32 * k;
                if (d < hs)
                    o[k] += pj * Vs[jj * hs + d];
            }
        }
        m = m_new;
    }
    if (!valid)
        return;
    float inv = 1.0f / l;
    float *orow = out + ((size_t)b * T + t) * C + (size_t)h * hs;
#pragma unroll
    for (int k = 0; k < PT_ATT_PER_LANE; k++) {
        int d = lane + 32 * k;
        if (d < hs)
            orow[d] = o[k] * inv;
    }
    if (lane == 0)
        lse[(size_t)bh * T + t] = m + logf(l);
}

__global__ void pt_k_att_bwd_dq(float *dqkv, float *Dbuf, const float *dout, const float *qkv, const float *out,
                                const float *lse, int T, int C, int NH, float scale)
{
    extern __shared__ float sm[];
    const int hs = C / NH, ld = 3 * C, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int t0 = blockIdx.x * PT_ATT_WARPS, t = t0 + warp;
    const bool valid = t < T;
    float *Ks = sm;                                   /* [32][hs+1] */
    float *Vs = Ks + PT_ATT_TILE * (hs + 1);          /* [32][hs+1] */
    float *qs = Vs + PT_ATT_TILE * (hs + 1) + warp * 2 * hs; /* [8][2][hs]: q, dO */
    float *dos = qs + hs;
    const float *base = qkv + (size_t)b * T * ld + (size_t)h * hs;
    float D = 0.0f, L = 0.0f;
    if (valid) {
        const float *orow = out + ((size_t)b * T + t) * C + (size_t)h * hs;
        const float *dorow = dout + ((size_t)b * T + t) * C + (size_t)h * hs;
        float acc = 0.0f;
        for (int d = lane; d < hs; d += 32) {
            qs[d] = base[(size_t)t * ld + d];
            dos[d] = dorow[d];
            acc += dorow[d] * orow[d];
        }
        D = pt_warp_sum(acc);
        L = lse[(size_t)bh * T + t];
        if (lane == 0)
            Dbuf[(size_t)bh * T + t] = D;
    }
    float dq[PT_ATT_PER_LANE];
#pragma unroll
    for (int k = 0; k < PT_ATT_PER_LANE; k++)
        dq[k] = 0.0f;
    const int kend = min(t0 + PT_ATT_WARPS, T);
    for (int k0 = 0; k0 < kend; k0 += PT_ATT_TILE) {
        __syncthreads();
        for (int i = threadIdx.x; i < PT_ATT_TILE * hs; i += blockDim.x) {
            int r = i / hs, d = i % hs, j = k0 + r;
            const float *row = base + (size_t)j * ld;
            Ks[r * (hs + 1) + d] = j < T ? row[C + d] : 0.0f;
            Vs[r * (hs + 1) + d] = j < T ? row[2 * C + d] : 0.0f;
        }
        __syncthreads();
        if (!valid || k0 > t)
            continue;
        const int j = k0 + lane;
        float ds = 0.0f;
        if (j <= t) {
            float p = expf(scale * pt_att_dot(qs, Ks + lane * (hs + 1), hs) - L);
            float dp = pt_att_dot(dos, Vs + lane * (hs + 1), hs);
            ds = p * (dp - D);
        }
        const int n_keys = min(PT_ATT_TILE, t - k0 + 1);
        for (int jj = 0; jj < n_keys; jj++) {
            float dsj = __shfl_sync(0xffffffffu, ds, jj);
#pragma unroll
            for (int k = 0; k < PT_ATT_PER_LANE; k++) {
                int d = lane + 32 * k;
                if (d < hs)
                    dq[k] += dsj * Ks[jj * (hs + 1) + d];
            }
        }
    }
    if (!valid)
        return;
    float *dqrow = dqkv + (size_t)b * T * ld + (size_t)t * ld + (size_t)h * hs;
#pragma unroll
    for (int k = 0; k < PT_ATT_PER_LANE; k++) {
        int d = lane + 32 * k;
        if (d < hs)
            dqrow[d] = scale * dq[k];
    }
}

__global__ void pt_k_att_bwd_dkv(float *dqkv, const float *Dbuf, const float *dout, const float *qkv,
                                 const float *lse, int T, int C, int NH, float scale)
{
    extern __shared__ float sm[];
    const int hs = C / NH, ld = 3 * C, bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int j0 = blockIdx.x * PT_ATT_WARPS, j = j0 + warp;
    const bool valid = j < T;
    float *Qs = sm;                                   /* [32][hs+1] */
    float *dOs = Qs + PT_ATT_TILE * (hs + 1);         /* [32][hs+1] */
    float *Ls = dOs + PT_ATT_TILE * (hs + 1);         /* [32] */
    float *Ds = Ls + PT_ATT_TILE;                     /* [32] */
    float *ks = Ds + PT_ATT_TILE + warp * 2 * hs;     /* [8][2][hs]: k, v */
    float *vs = ks + hs;
    const float *base = qkv + (size_t)b * T * ld + (size_t)h * hs;
    const float *dobase = dout + (size_t)b * T * C + (size_t)h * hs;
    if (valid)
        for (int d = lane; d < hs; d += 32) {
            ks[d] = base[(size_t)j * ld + C + d];
            vs[d] = base[(size_t)j * ld + 2 * C + d];
        }
    float dk[PT_ATT_PER_LANE], dv[PT_ATT_PER_LANE];
#pragma unroll
    for (int k = 0; k < PT_ATT_PER_LANE; k++)
        dk[k] = dv[k] = 0.0f;
    for (int q0 = j0; q0 < T; q0 += PT_ATT_TILE) {
        __syncthreads();
        for (int i = threadIdx.x; i < PT_ATT_TILE * hs; i += blockDim.x) {
            int r = i / hs, d = i % hs, t = q0 + r;
            Qs[r * (hs + 1) + d] = t < T ? base[(size_t)t * ld + d] : 0.0f;
            dOs[r * (hs + 1) + d] = t < T ? dobase[(size_t)t * C + d] : 0.0f;
        }
        if (threadIdx.x < PT_ATT_TILE) {
            int t = q0 + threadIdx.x;
            Ls[threadIdx.x] = t < T ? lse[(size_t)bh * T + t] : 0.0f;
            Ds[threadIdx.x] = t < T ? Dbuf[(size_t)bh * T + t] : 0.0f;
        }
        __syncthreads();
        if (!valid)
            continue;
        const int t = q0 + lane;
        float p = 0.0f, ds = 0.0f;
        if (t >= j && t < T) {
            p = expf(scale * pt_att_dot(Qs + lane * (hs + 1), ks, hs) - Ls[lane]);
            float dp = pt_att_dot(dOs + lane * (hs + 1), vs, hs);
            ds = p * (dp - Ds[lane]);
        }
        const int first = max(0, j - q0), n_q = min(PT_ATT_TILE, T - q0);
        for (int tt = first; tt < n_q; tt++) {
            float pt = __shfl_sync(0xffffffffu, p, tt);
            float dst = __shfl_sync(0xffffffffu, ds, tt);
#pragma unroll
            for (int k = 0; k < PT_ATT_PER_LANE; k++) {
                int d = lane + 32 * k;
                if (d < hs) {
                    dv[k] += pt * dOs[tt * (hs + 1) + d];
                    dk[k] += dst * Qs[tt * (hs + 1) + d];
                }
            }
        }
    }
    if (!valid)
        return;
    float *row = dqkv + (size_t)b * T * ld + (size_t)j * ld + (size_t)h * hs;
#pragma unroll
    for (int k = 0; k < PT_ATT_PER_LANE; k++) {
        int d = lane + 32 * k;
        if (d < hs) {
            row[C + d] = scale * dk[k];
            row[2 * C + d] = dv[k];
        }
    }
}

pt_status pt_cuda_attention_forward(pt_stream *s, float *out, float *saved, float *scratch, const float *qkv, int B,
                                    int T, int C, int NH)
{
    (void)scratch;
    PT_CHECK(pt_cuda_att_check("attention_forward", B, T, C, NH));
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    size_t smem = (size_t)(PT_ATT_TILE * (hs + 1) + PT_ATT_TILE * hs + PT_ATT_WARPS * hs) * sizeof(float);
    dim3 grid((T + PT_ATT_WARPS - 1) / PT_ATT_WARPS, B * NH);
    pt_k_att_fwd<<<grid, PT_ATT_WARPS * 32, smem, s->stream>>>(out, saved, qkv, T, C, NH, scale);
    return pt_cuda_launched("attention_forward");
}

pt_status pt_cuda_attention_backward(pt_stream *s, float *dqkv, float *scratch, const float *dout, const float *qkv,
                                     const float *out, const float *saved, int B, int T, int C, int NH)
{
    PT_CHECK(pt_cuda_att_check("attention_backward", B, T, C, NH));
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    dim3 grid((T + PT_ATT_WARPS - 1) / PT_ATT_WARPS, B * NH);
    size_t smem_dq = (size_t)(2 * PT_ATT_TILE * (hs + 1) + PT_ATT_WARPS * 2 * hs) * sizeof(float);
    pt_k_att_bwd_dq<<<grid, PT_ATT_WARPS * 32, smem_dq, s->stream>>>(dqkv, scratch, dout, qkv, out, saved, T, C, NH,
                                                                     scale);
    PT_CHECK(pt_cuda_launched("attention_backward (dq)"));
    size_t smem_dkv = (size_t)(2 * PT_ATT_TILE * (hs + 1) + 2 * PT_ATT_TILE + PT_ATT_WARPS * 2 * hs) * sizeof(float);
    pt_k_att_bwd_dkv<<<grid, PT_ATT_WARPS * 32, smem_dkv, s->stream>>>(dqkv, scratch, dout, qkv, saved, T, C, NH,
                                                                       scale);
    return pt_cuda_launched("attention_backward (dk, dv)");
}
