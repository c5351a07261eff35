/* kernels/cuda/attention.cu — causal multi-head or grouped-query self-attention, scale
 * 1/sqrt(C/NH), flash style: no (T,T) matrix ever reaches global memory. A qkv row is
 * W = C + 2*NKV*hs floats (the NH query heads, then NKV key heads, then NKV value heads); query
 * head h reads kv head h / (NH/NKV) (NKV == NH: GPT-2's multi-head layout, W = 3C). Like the
 * CPU backend, the forward keeps only the log-sum-exp of each softmax row, saved = (B,NH,T)
 * floats, and the backward recomputes the probabilities from Q, K and it.
 *
 * Layout of the work: a block is 8 warps and covers 32 rows of one (batch, head); a warp owns 4
 * consecutive rows (queries in the forward and the dQ pass, keys in the dK/dV pass). The block
 * stages tiles of 32 rows of the other side (keys, or queries) in shared memory. Inside a tile,
 * lane l takes row l of the tile for the dot products (rows padded, see pt_att_pad, and read as
 * float4 when hs % 4 == 0, without bank conflicts), and each value it reads serves the warp's 4
 * rows; then each lane owns the head dimensions d = lane, lane+32, ... of the accumulators, with
 * the tile's weights broadcast by shuffles. Head size hs = C/NH up to 128 (GPT-2 uses 64); a kernel that needs more than 48 KiB
 * of shared memory (the backward passes from hs = 96) asks for it with cudaFuncSetAttribute.
 *   forward   online softmax over key tiles: m, l per query; O = sum_j p_j V_j / l; lse = m + log l
 *   dQ pass   D_t = dO_t . O_t (also written to scratch), p = exp(s - lse), dp = dO_t . V_j,
 *             ds = p (dp - D_t), dQ_t = scale sum_j ds_j K_j
 *   dK,dV     per key j of kv head g, over the NH/NKV query heads of g's group in order and
 *             within each over query tiles t >= j: dV_j = sum_h sum_t p dO_t,
 *             dK_j = scale sum_h sum_t ds Q_t (one block per (batch, kv head, key tile), so the
 *             group's sum needs no atomics; NKV == NH is one head per group, the MHA kernel)
 * Every sum runs in a fixed order (tiles ascending, lanes by shuffle order), so results are
 * deterministic; dQ, dK and dV are each written by one warp (no atomics), which is why the
 * backward computes the scores twice (once per pass). Scratch: D, (B,NH,T) floats. */
#include <math.h>

#include "cuda_internal.h"

#define PT_ATT_WARPS 8
#define PT_ATT_TILE 32
#define PT_ATT_HS_MAX 128
#define PT_ATT_PER_LANE (PT_ATT_HS_MAX / 32)
static_assert(PT_ATT_TILE == 32, "lane l of a warp takes row l of a staged tile");

size_t pt_cuda_attention_saved_size(int B, int T, int C, int NH, int NKV)
{
    (void)NKV;
    (void)C;
    return (size_t)B * NH * T;
}

size_t pt_cuda_attention_scratch_size(int B, int T, int C, int NH, int NKV)
{
    (void)NKV;
    (void)C;
    return (size_t)B * NH * T;
}

static pt_status pt_cuda_att_check(const char *what, int B, int T, int C, int NH, int NKV)
{
    if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0)
        return pt_fail(PT_EINVAL, "%s: shape B=%d T=%d C=%d NH=%d; sizes must be positive and NH must divide C",
                       what, B, T, C, NH);
    if (NKV <= 0 || NKV > NH || NH % NKV != 0)
        return pt_fail(PT_EINVAL, "%s: %d key/value heads for %d query heads; NKV must be between 1 and NH and "
                                  "divide NH", what, NKV, NH);
    if ((long)B * NH > 65535)
        return pt_fail(PT_EINVAL, "%s: B=%d x NH=%d is above the CUDA grid's 65535 (batch, head) pairs; use smaller "
                                  "micro-batches", what, B, NH);
    if (C / NH > PT_ATT_HS_MAX)
        return pt_fail(PT_ENOTSUP, "%s: head size %d (C=%d / NH=%d) is above the CUDA kernel's %d; use more heads",
                       what, C / NH, C, NH, PT_ATT_HS_MAX);
    return PT_OK;
}

/* Rows per warp: a warp owns PT_ATT_R consecutive rows, so each element of a staged tile read
 * from shared memory serves PT_ATT_R rows, and a block covers PT_ATT_WARPS * PT_ATT_R = 32 rows,
 * one tile of the other side. */
#define PT_ATT_R 4
#define PT_ATT_ROWS (PT_ATT_WARPS * PT_ATT_R)

/* Row stride of a staged tile that lanes read row-wise: hs + 4 when hs % 4 == 0 (the lanes'
 * float4 reads then fall on distinct banks in each quarter-warp phase), else hs + 1 (scalar
 * reads, 32 distinct banks). */
__host__ __device__ __forceinline__ int pt_att_pad(int hs)
{
    return hs % 4 == 0 ? hs + 4 : hs + 1;
}

/* acc[r] += rows[r*hs + d] * x[d] for d = 0..hs-1 in order, r < PT_ATT_R: `rows` are the warp's
 * PT_ATT_R rows (every lane reads the same address: a broadcast), x is this lane's row of the
 * staged tile. With hs % 4 == 0 both are read as float4; the order of the additions is the same
 * as the scalar loop's. */
__device__ __forceinline__ void pt_att_dots(float *acc, const float *rows, const float *x, int hs)
{
    if ((hs & 3) == 0) {
        for (int d = 0; d < hs; d += 4) {
            float4 xv = *reinterpret_cast<const float4 *>(x + d);
#pragma unroll
            for (int r = 0; r < PT_ATT_R; r++) {
                float4 a = *reinterpret_cast<const float4 *>(rows + r * hs + d);
                acc[r] += a.x * xv.x;
                acc[r] += a.y * xv.y;
                acc[r] += a.z * xv.z;
                acc[r] += a.w * xv.w;
            }
        }
    } else {
        for (int d = 0; d < hs; d++) {
            float xd = x[d];
#pragma unroll
            for (int r = 0; r < PT_ATT_R; r++)
                acc[r] += rows[r * hs + d] * xd;
        }
    }
}

__global__ void pt_k_att_fwd(float *out, float *lse, const float *qkv, int T, int C, int NH, int NKV, float scale)
{
    extern __shared__ float sm[];
    const int hs = C / NH, ld = C + 2 * NKV * hs, bh = blockIdx.y, b = bh / NH, h = bh % NH, pad = pt_att_pad(hs);
    const int kvo = C + (h / (NH / NKV)) * hs, vo = NKV * hs; /* kv head's k within a row; v after k */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int t0 = blockIdx.x * PT_ATT_ROWS, tw = t0 + warp * PT_ATT_R; /* the warp's first row */
    const int tmax = min(tw + PT_ATT_R, T) - 1;                        /* its last valid row (< tw: none) */
    float *Ks = sm;                            /* [32][pad] */
    float *Vs = Ks + PT_ATT_TILE * pad;        /* [32][hs] */
    float *Qs = Vs + PT_ATT_TILE * hs;         /* [32][hs]: the block's query rows */
    const float *base = qkv + (size_t)b * T * ld + (size_t)h * hs, *kvbase = qkv + (size_t)b * T * ld + kvo;
    for (int i = threadIdx.x; i < PT_ATT_ROWS * hs; i += blockDim.x) {
        int r = i / hs, d = i % hs, t = t0 + r;
        Qs[i] = t < T ? base[(size_t)t * ld + d] : 0.0f;
    }
    const float *qw = Qs + warp * PT_ATT_R * hs;
    float m[PT_ATT_R], l[PT_ATT_R], o[PT_ATT_R][PT_ATT_PER_LANE];
#pragma unroll
    for (int r = 0; r < PT_ATT_R; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int k = 0; k < PT_ATT_PER_LANE; k++)
            o[r][k] = 0.0f;
    }
    const int kend = min(t0 + PT_ATT_ROWS, T);
    for (int k0 = 0; k0 < kend; k0 += PT_ATT_TILE) {
        __syncthreads(); /* the previous tile is no longer read (and Qs is written, first time) */
        for (int i = threadIdx.x; i < PT_ATT_TILE * hs; i += blockDim.x) {
            int r = i / hs, d = i % hs, j = k0 + r;
            const float *row = kvbase + (size_t)j * ld;
            Ks[r * pad + d] = j < T ? row[d] : 0.0f;
            Vs[r * hs + d] = j < T ? row[vo + d] : 0.0f;
        }
        __syncthreads();
        if (k0 > tmax || tmax < tw) /* every row of this warp is before the tile, or past T */
            continue;
        const int j = k0 + lane;
        float sc[PT_ATT_R];
#pragma unroll
        for (int r = 0; r < PT_ATT_R; r++)
            sc[r] = 0.0f;
        pt_att_dots(sc, qw, Ks + lane * pad, hs);
        float p[PT_ATT_R];
#pragma unroll
        for (int r = 0; r < PT_ATT_R; r++) {
            const int t = tw + r;
            const bool ok = t <= tmax && j <= t;
            float s = ok ? scale * sc[r] : -INFINITY;
            float mx = pt_warp_max(s);
            p[r] = 0.0f;
            if (mx == -INFINITY) /* no key of this tile for row r: nothing changes (warp-uniform) */
                continue;
            float m_new = fmaxf(m[r], mx);
            float corr = expf(m[r] - m_new); /* m[r] = -inf on the first tile: 0 */
            p[r] = ok ? expf(s - m_new) : 0.0f;
            l[r] = l[r] * corr + pt_warp_sum(p[r]);
#pragma unroll
            for (int k = 0; k < PT_ATT_PER_LANE; k++)
                o[r][k] *= corr;
            m[r] = m_new;
        }
        const int n_keys = min(PT_ATT_TILE, tmax - k0 + 1);
        for (int jj = 0; jj < n_keys; jj++) {
            float pj[PT_ATT_R];
#pragma unroll
            for (int r = 0; r < PT_ATT_R; r++)
                pj[r] = __shfl_sync(0xffffffffu, p[r], jj);
#pragma unroll
            for (int k = 0; k < PT_ATT_PER_LANE; k++) {
                int d = lane + 32 * k;
                if (d < hs) {
                    float v = Vs[jj * hs + d];
#pragma unroll
                    for (int r = 0; r < PT_ATT_R; r++)
                        o[r][k] += pj[r] * v;
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < PT_ATT_R; r++) {
        const int t = tw + r;
        if (t > tmax)
            break;
        float inv = 1.0f / l[r];
        float *orow = out + ((size_t)b * T + t) * C + (size_t)h * hs;
#pragma unroll
        for (int k = 0; k < PT_ATT_PER_LANE; k++) {
            int d = lane + 32 * k;
            if (d < hs)
                orow[d] = o[r][k] * inv;
        }
        if (lane == 0)
            lse[(size_t)bh * T + t] = m[r] + logf(l[r]);
    }
}

__global__ void pt_k_att_bwd_dq(float *dqkv, float *Dbuf, const float *dout, const float *qkv, const float *out,
                                const float *lse, int T, int C, int NH, int NKV, float scale)
{
    extern __shared__ float sm[];
    const int hs = C / NH, ld = C + 2 * NKV * hs, bh = blockIdx.y, b = bh / NH, h = bh % NH, pad = pt_att_pad(hs);
    const int kvo = C + (h / (NH / NKV)) * hs, vo = NKV * hs;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int t0 = blockIdx.x * PT_ATT_ROWS, tw = t0 + warp * PT_ATT_R;
    const int tmax = min(tw + PT_ATT_R, T) - 1;
    float *Ks = sm;                            /* [32][pad] */
    float *Vs = Ks + PT_ATT_TILE * pad;        /* [32][pad] */
    float *Qs = Vs + PT_ATT_TILE * pad;        /* [32][hs] */
    float *dOs = Qs + PT_ATT_ROWS * hs;        /* [32][hs] */
    const float *base = qkv + (size_t)b * T * ld + (size_t)h * hs, *kvbase = qkv + (size_t)b * T * ld + kvo;
    const float *obase = out + (size_t)b * T * C + (size_t)h * hs;
    const float *dobase = dout + (size_t)b * T * C + (size_t)h * hs;
    for (int i = threadIdx.x; i < PT_ATT_ROWS * hs; i += blockDim.x) {
        int r = i / hs, d = i % hs, t = t0 + r;
        Qs[i] = t < T ? base[(size_t)t * ld + d] : 0.0f;
        dOs[i] = t < T ? dobase[(size_t)t * C + d] : 0.0f;
    }
    const float *qw = Qs + warp * PT_ATT_R * hs, *dow = dOs + warp * PT_ATT_R * hs;
    float D[PT_ATT_R], L[PT_ATT_R], dq[PT_ATT_R][PT_ATT_PER_LANE];
#pragma unroll
    for (int r = 0; r < PT_ATT_R; r++) {
        const int t = tw + r;
        float acc = 0.0f;
        if (t <= tmax)
            for (int d = lane; d < hs; d += 32)
                acc += dobase[(size_t)t * C + d] * obase[(size_t)t * C + d];
        D[r] = pt_warp_sum(acc);
        L[r] = t <= tmax ? lse[(size_t)bh * T + t] : 0.0f;
        if (t <= tmax && lane == 0)
            Dbuf[(size_t)bh * T + t] = D[r];
#pragma unroll
        for (int k = 0; k < PT_ATT_PER_LANE; k++)
            dq[r][k] = 0.0f;
    }
    const int kend = min(t0 + PT_ATT_ROWS, T);
    for (int k0 = 0; k0 < kend; k0 += PT_ATT_TILE) {
        __syncthreads();
        for (int i = threadIdx.x; i < PT_ATT_TILE * hs; i += blockDim.x) {
            int r = i / hs, d = i % hs, j = k0 + r;
            const float *row = kvbase + (size_t)j * ld;
            Ks[r * pad + d] = j < T ? row[d] : 0.0f;
            Vs[r * pad + d] = j < T ? row[vo + d] : 0.0f;
        }
        __syncthreads();
        if (k0 > tmax || tmax < tw)
            continue;
        const int j = k0 + lane;
        float sc[PT_ATT_R], dp[PT_ATT_R];
#pragma unroll
        for (int r = 0; r < PT_ATT_R; r++)
            sc[r] = dp[r] = 0.0f;
        pt_att_dots(sc, qw, Ks + lane * pad, hs);
        pt_att_dots(dp, dow, Vs + lane * pad, hs);
        float ds[PT_ATT_R];
#pragma unroll
        for (int r = 0; r < PT_ATT_R; r++) {
            const int t = tw + r;
            ds[r] = t <= tmax && j <= t ? expf(scale * sc[r] - L[r]) * (dp[r] - D[r]) : 0.0f;
        }
        const int n_keys = min(PT_ATT_TILE, tmax - k0 + 1);
        for (int jj = 0; jj < n_keys; jj++) {
            float dsj[PT_ATT_R];
#pragma unroll
            for (int r = 0; r < PT_ATT_R; r++)
                dsj[r] = __shfl_sync(0xffffffffu, ds[r], jj);
#pragma unroll
            for (int k = 0; k < PT_ATT_PER_LANE; k++) {
                int d = lane + 32 * k;
                if (d < hs) {
                    float kv = Ks[jj * pad + d];
#pragma unroll
                    for (int r = 0; r < PT_ATT_R; r++)
                        dq[r][k] += dsj[r] * kv;
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < PT_ATT_R; r++) {
        const int t = tw + r;
        if (t > tmax)
            break;
        float *dqrow = dqkv + ((size_t)b * T + t) * ld + (size_t)h * hs;
#pragma unroll
        for (int k = 0; k < PT_ATT_PER_LANE; k++) {
            int d = lane + 32 * k;
            if (d < hs)
                dqrow[d] = scale * dq[r][k];
        }
    }
}

/* Grid (key tiles, B * NKV): the block's 32 keys of kv head g; the group's query heads
 * h = g * (NH/NKV) + 0, 1, ... are taken one after another, each over its query tiles in order. */
__global__ void pt_k_att_bwd_dkv(float *dqkv, const float *Dbuf, const float *dout, const float *qkv,
                                 const float *lse, int T, int C, int NH, int NKV, float scale)
{
    extern __shared__ float sm[];
    const int hs = C / NH, ld = C + 2 * NKV * hs, pad = pt_att_pad(hs), G = NH / NKV;
    const int bg = blockIdx.y, b = bg / NKV, g = bg % NKV, vo = NKV * hs;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int j0 = blockIdx.x * PT_ATT_ROWS, jw = j0 + warp * PT_ATT_R; /* the warp's first key */
    const int jmax = min(jw + PT_ATT_R, T) - 1;                        /* its last valid key */
    float *Qs = sm;                            /* [32][pad] */
    float *dOs = Qs + PT_ATT_TILE * pad;       /* [32][pad] */
    float *Ls = dOs + PT_ATT_TILE * pad;       /* [32] */
    float *Ds = Ls + PT_ATT_TILE;              /* [32] */
    float *Kb = Ds + PT_ATT_TILE;              /* [32][hs]: the block's keys */
    float *Vb = Kb + PT_ATT_ROWS * hs;         /* [32][hs] */
    const float *kvbase = qkv + (size_t)b * T * ld + C + (size_t)g * hs;
    for (int i = threadIdx.x; i < PT_ATT_ROWS * hs; i += blockDim.x) {
        int r = i / hs, d = i % hs, j = j0 + r;
        Kb[i] = j < T ? kvbase[(size_t)j * ld + d] : 0.0f;
        Vb[i] = j < T ? kvbase[(size_t)j * ld + vo + d] : 0.0f;
    }
    const float *kw = Kb + warp * PT_ATT_R * hs, *vw = Vb + warp * PT_ATT_R * hs;
    float dk[PT_ATT_R][PT_ATT_PER_LANE], dv[PT_ATT_R][PT_ATT_PER_LANE];
#pragma unroll
    for (int r = 0; r < PT_ATT_R; r++)
#pragma unroll
        for (int k = 0; k < PT_ATT_PER_LANE; k++)
            dk[r][k] = dv[r][k] = 0.0f;
    for (int hh = 0; hh < G; hh++) {
        const int h = g * G + hh, bh = b * NH + h;
        const float *base = qkv + (size_t)b * T * ld + (size_t)h * hs;
        const float *dobase = dout + (size_t)b * T * C + (size_t)h * hs;
        for (int q0 = j0; q0 < T; q0 += PT_ATT_TILE) {
            __syncthreads(); /* the previous tile is no longer read (and Kb, Vb are written, first time) */
            for (int i = threadIdx.x; i < PT_ATT_TILE * hs; i += blockDim.x) {
                int r = i / hs, d = i % hs, t = q0 + r;
                Qs[r * pad + d] = t < T ? base[(size_t)t * ld + d] : 0.0f;
                dOs[r * pad + d] = t < T ? dobase[(size_t)t * C + d] : 0.0f;
            }
            if (threadIdx.x < PT_ATT_TILE) {
                int t = q0 + threadIdx.x;
                Ls[threadIdx.x] = t < T ? lse[(size_t)bh * T + t] : 0.0f;
                Ds[threadIdx.x] = t < T ? Dbuf[(size_t)bh * T + t] : 0.0f;
            }
            __syncthreads();
            if (jmax < jw) /* this warp has no key below T */
                continue;
            const int t = q0 + lane;
            float sc[PT_ATT_R], dp[PT_ATT_R];
#pragma unroll
            for (int r = 0; r < PT_ATT_R; r++)
                sc[r] = dp[r] = 0.0f;
            pt_att_dots(sc, kw, Qs + lane * pad, hs);
            pt_att_dots(dp, vw, dOs + lane * pad, hs);
            float p[PT_ATT_R], ds[PT_ATT_R];
#pragma unroll
            for (int r = 0; r < PT_ATT_R; r++) {
                const int j = jw + r;
                const bool ok = j <= jmax && t < T && t >= j;
                p[r] = ok ? expf(scale * sc[r] - Ls[lane]) : 0.0f;
                ds[r] = ok ? p[r] * (dp[r] - Ds[lane]) : 0.0f;
            }
            const int first = max(0, jw - q0), n_q = min(PT_ATT_TILE, T - q0);
            for (int tt = first; tt < n_q; tt++) {
                float pt[PT_ATT_R], dst[PT_ATT_R];
#pragma unroll
                for (int r = 0; r < PT_ATT_R; r++) {
                    pt[r] = __shfl_sync(0xffffffffu, p[r], tt);
                    dst[r] = __shfl_sync(0xffffffffu, ds[r], tt);
                }
#pragma unroll
                for (int k = 0; k < PT_ATT_PER_LANE; k++) {
                    int d = lane + 32 * k;
                    if (d < hs) {
                        float dov = dOs[tt * pad + d], qv = Qs[tt * pad + d];
#pragma unroll
                        for (int r = 0; r < PT_ATT_R; r++) {
                            dv[r][k] += pt[r] * dov;
                            dk[r][k] += dst[r] * qv;
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < PT_ATT_R; r++) {
        const int j = jw + r;
        if (j > jmax)
            break;
        float *row = dqkv + ((size_t)b * T + j) * ld + C + (size_t)g * hs;
#pragma unroll
        for (int k = 0; k < PT_ATT_PER_LANE; k++) {
            int d = lane + 32 * k;
            if (d < hs) {
                row[d] = scale * dk[r][k];
                row[vo + d] = dv[r][k];
            }
        }
    }
}

/* Allows `bytes` of dynamic shared memory for `kernel` (above 48 KiB it must be asked for). */
template <typename K> static pt_status pt_att_smem(K kernel, size_t bytes, const char *what)
{
    if (bytes <= 48 * 1024)
        return PT_OK;
    PT_CUDA_CHECK(cudaFuncSetAttribute((const void *)kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes), what);
    return PT_OK;
}

pt_status pt_cuda_attention_forward(pt_stream *s, float *out, float *saved, float *scratch, const float *qkv, int B,
                                    int T, int C, int NH, int NKV)
{
    (void)scratch;
    PT_CHECK(pt_cuda_att_check("attention_forward", B, T, C, NH, NKV));
    if (s->att_mode == PT_CUDA_ATT_FLASH && pt_cuda_attention_flash_fits(C / NH)) /* attention_flash.cu */
        return pt_cuda_attention_flash_forward(s, out, saved, qkv, B, T, C, NH, NKV);
    const int hs = C / NH, pad = pt_att_pad(hs);
    const float scale = 1.0f / sqrtf((float)hs);
    size_t smem = (size_t)(PT_ATT_TILE * pad + PT_ATT_TILE * hs + PT_ATT_ROWS * hs) * sizeof(float);
    PT_CHECK(pt_att_smem(pt_k_att_fwd, smem, "attention_forward shared memory"));
    dim3 grid((T + PT_ATT_ROWS - 1) / PT_ATT_ROWS, B * NH);
    pt_k_att_fwd<<<grid, PT_ATT_WARPS * 32, smem, s->stream>>>(out, saved, qkv, T, C, NH, NKV, scale);
    return pt_cuda_launched("attention_forward");
}

pt_status pt_cuda_attention_backward(pt_stream *s, float *dqkv, float *scratch, const float *dout, const float *qkv,
                                     const float *out, const float *saved, int B, int T, int C, int NH, int NKV)
{
    PT_CHECK(pt_cuda_att_check("attention_backward", B, T, C, NH, NKV));
    if (s->att_mode == PT_CUDA_ATT_FLASH && pt_cuda_attention_flash_fits(C / NH))
        return pt_cuda_attention_flash_backward(s, dqkv, scratch, dout, qkv, out, saved, B, T, C, NH, NKV);
    const int hs = C / NH, pad = pt_att_pad(hs);
    const float scale = 1.0f / sqrtf((float)hs);
    dim3 grid((T + PT_ATT_ROWS - 1) / PT_ATT_ROWS, B * NH);
    size_t smem_dq = (size_t)(2 * PT_ATT_TILE * pad + 2 * PT_ATT_ROWS * hs) * sizeof(float);
    PT_CHECK(pt_att_smem(pt_k_att_bwd_dq, smem_dq, "attention_backward shared memory"));
    pt_k_att_bwd_dq<<<grid, PT_ATT_WARPS * 32, smem_dq, s->stream>>>(dqkv, scratch, dout, qkv, out, saved, T, C, NH,
                                                                     NKV, scale);
    PT_CHECK(pt_cuda_launched("attention_backward (dq)"));
    size_t smem_dkv = (size_t)(2 * PT_ATT_TILE * pad + 2 * PT_ATT_TILE + 2 * PT_ATT_ROWS * hs) * sizeof(float);
    PT_CHECK(pt_att_smem(pt_k_att_bwd_dkv, smem_dkv, "attention_backward shared memory"));
    dim3 grid_kv((T + PT_ATT_ROWS - 1) / PT_ATT_ROWS, B * NKV);
    pt_k_att_bwd_dkv<<<grid_kv, PT_ATT_WARPS * 32, smem_dkv, s->stream>>>(dqkv, scratch, dout, qkv, saved, T, C,
                                                                          NH, NKV, scale);
    return pt_cuda_launched("attention_backward (dk, dv)");
}

/* ---- attention against a KV cache (generation) ----
 * One block per (query, sequence*head): 128 threads walk the keys in tiles of 128 (one score per
 * thread, the dot product over hs in order), the tile's maximum and sum come from block
 * reductions, and an online softmax keeps m and l (the same in every thread) while each thread
 * owns the head dimensions d = tid, tid+128, ... of the accumulator in shared memory.
 * Shared memory: q (hs), acc (hs), the tile's weights (128) and 32 floats of reduction space. */
#define PT_DEC_THREADS 128

__device__ __forceinline__ float pt_dec_reduce(float v, float *red, int is_max)
{
    v = is_max ? pt_warp_max(v) : pt_warp_sum(v);
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads(); /* red may still be read by the previous reduction */
    if (lane == 0)
        red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : (is_max ? -INFINITY : 0.0f);
    return is_max ? pt_warp_max(v) : pt_warp_sum(v);
}

__global__ void pt_k_att_decode(float *out, const float *cache, int Tcap, int t0, int n, int C, int NH, int NKV,
                                float scale)
{
    extern __shared__ float sm[];
    const int i = blockIdx.x, bh = blockIdx.y, b = bh / NH, h = bh % NH, hs = C / NH, pos = t0 + i;
    const size_t ld = (size_t)C + 2 * (size_t)NKV * hs;
    const size_t ko = C + (size_t)(h / (NH / NKV)) * hs, vo = ko + (size_t)NKV * hs; /* the kv head's k, v */
    float *q = sm, *acc = sm + hs, *p = sm + 2 * hs, *red = p + PT_DEC_THREADS;
    const float *base = cache + (size_t)b * Tcap * ld + (size_t)h * hs, *kvbase = cache + (size_t)b * Tcap * ld;
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
        q[d] = base[(size_t)pos * ld + d];
        acc[d] = 0.0f;
    }
    __syncthreads();
    float m = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 <= pos; j0 += PT_DEC_THREADS) {
        const int j = j0 + threadIdx.x;
        float sc = -INFINITY;
        if (j <= pos) {
            const float *k = kvbase + (size_t)j * ld + ko;
            float dot = 0.0f;
            for (int d = 0; d < hs; d++)
                dot += q[d] * k[d];
            sc = dot * scale;
        }
        const float m_new = fmaxf(m, pt_dec_reduce(sc, red, 1));
        const float e = j <= pos ? expf(sc - m_new) : 0.0f;
        p[threadIdx.x] = e;
        const float sum = pt_dec_reduce(e, red, 0); /* its barriers also publish p */
        const float corr = expf(m - m_new);         /* 0 on the first tile (m = -inf) */
        l = l * corr + sum;
        m = m_new;
        const int cnt = pos + 1 - j0 < PT_DEC_THREADS ? pos + 1 - j0 : PT_DEC_THREADS;
        for (int d = threadIdx.x; d < hs; d += blockDim.x) {
            float a = acc[d] * corr;
            for (int jj = 0; jj < cnt; jj++)
                a += p[jj] * kvbase[(size_t)(j0 + jj) * ld + vo + d];
            acc[d] = a;
        }
        __syncthreads(); /* p is rewritten by the next tile */
    }
    float *o = out + ((size_t)b * n + i) * C + (size_t)h * hs;
    const float inv = 1.0f / l;
    for (int d = threadIdx.x; d < hs; d += blockDim.x)
        o[d] = acc[d] * inv;
}

pt_status pt_cuda_attention_decode(pt_stream *s, float *out, const float *cache, int B, int Tcap, int t0, int n,
                                   int C, int NH, int NKV)
{
    if (B <= 0 || n <= 0 || C <= 0 || NH <= 0 || C % NH != 0 || t0 < 0 || Tcap <= 0 || t0 + n > Tcap)
        return pt_fail(PT_EINVAL,
                       "attention_decode: shape B=%d Tcap=%d t0=%d n=%d C=%d NH=%d; sizes must be positive, NH must "
                       "divide C and t0 + n must not pass Tcap",
                       B, Tcap, t0, n, C, NH);
    if (NKV <= 0 || NKV > NH || NH % NKV != 0)
        return pt_fail(PT_EINVAL, "attention_decode: %d key/value heads for %d query heads; NKV must be between 1 "
                                  "and NH and divide NH", NKV, NH);
    if ((long)B * NH > 65535)
        return pt_fail(PT_EINVAL, "attention_decode: B=%d x NH=%d is above the CUDA grid's 65535 (sequence, head) "
                                  "pairs; decode fewer sequences at once", B, NH);
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    size_t smem = (size_t)(2 * hs + PT_DEC_THREADS + 32) * sizeof(float);
    PT_CHECK(pt_att_smem(pt_k_att_decode, smem, "attention_decode shared memory"));
    dim3 grid(n, B * NH);
    pt_k_att_decode<<<grid, PT_DEC_THREADS, smem, s->stream>>>(out, cache, Tcap, t0, n, C, NH, NKV, scale);
    return pt_cuda_launched("attention_decode");
}
