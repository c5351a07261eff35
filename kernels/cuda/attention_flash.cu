/* kernels/cuda/attention_flash.cu — causal multi-head / grouped-query attention on tensor cores,
 * flash-attention style (issue 19): the backend's attention_forward / attention_backward with the
 * tile products QK^T, PV, dO V^T, dS K, P^T dO and dS^T Q as bf16 WMMA m16n16k16 products with
 * fp32 accumulation (nvcuda::wmma, sm_80 and later). Chosen per stream by PT_CUDA_ATTENTION=flash
 * (docs/cuda.md); attention.cu's fp32 kernels stay the default until this has run on a GPU.
 *
 * Layout and semantics are attention.cu's: qkv (B,T,W), W = C + 2*NKV*hs (NH query heads, NKV key
 * heads, NKV value heads; query head h reads kv head h / (NH/NKV)); out (B,T,C); scale 1/sqrt(hs);
 * saved = the log-sum-exp of each softmax row, (B,NH,T) floats (lse = log sum_j exp(scale q.k_j),
 * the same quantity as attention.cu's, so either backward takes either forward's saved state);
 * scratch = D_t = dO_t . O_t, (B,NH,T) floats. No (T,T) matrix reaches global memory.
 *
 * Tiling. A block is 4 warps (128 threads) and owns 64 rows of one (batch, head) — queries in the
 * forward and the dQ pass, keys of one (batch, kv head) in the dK/dV pass; warp w owns rows
 * 16w..16w+15 of them, one WMMA row of tiles. The block stages tiles of 64 rows of the other side
 * in shared memory, converted to bf16 on the way in (row stride hs + 8 bf16: 16-byte rows apart,
 * so the 8 rows an ldmatrix phase reads fall on distinct banks, and every 16x16 tile starts
 * 32-byte aligned as WMMA requires). Each warp has its own fp32 score tiles (16 x 64, stride 68)
 * and bf16 tiles of P / dS (16 x 64, stride 72). Per key tile:
 *   forward  S = Q K^T (fp32), masked and scaled; online softmax per row (running max m, sum l,
 *            two lanes per row over 32 columns each); P = exp(S - m) rounded to bf16, and l sums
 *            the ROUNDED values, so O / l is an exact convex combination of the bf16 values of V;
 *            O (fp32, shared memory, per warp) is rescaled by exp(m_old - m_new) and O += P V;
 *            finally out = O / l, lse = m + log l.
 *   dQ pass  D = rowsum(dO . O) in fp32 from the fp32 tensors (written to scratch);
 *            S = Q K^T, dP = dO V^T, P = exp(scale S - lse), dS = P (dP - D) rounded to bf16;
 *            dQ += dS K in accumulator fragments (registers) over all key tiles; dQ = scale dQ.
 *   dK,dV    per kv head g, over the NH/NKV query heads of its group in order, and within each
 *            over the query tiles at or after the block's keys: S^T = K Q^T, dP^T = V dO^T,
 *            P^T and dS^T as above (bf16), dV += P^T dO, dK += dS^T Q in registers; dK = scale dK.
 * Tiles (and 16-wide sub-tiles) lying wholly above the diagonal or past T are skipped, per warp.
 * Every sum has a fixed order (tiles ascending, the group's heads in order, WMMA k order), each
 * gradient row is written by one warp, no atomics: results are deterministic. Head sizes: a
 * multiple of 16 up to 128 (each a template instance, so the fragment arrays stay in registers);
 * the entries in attention.cu fall back to the fp32 kernels for other head sizes.
 *
 * Shared memory per block, hs = 128 (64): forward 110 KiB (70), dQ pass 111 KiB (70), dK/dV pass
 * 120.5 KiB (79.5); all above 48 KiB are asked for with cudaFuncSetAttribute (an A100 has 163 KiB
 * per block, an H100 227 KiB).
 *
 * Under the CPU emulator (tests/cuda/emu) nvcuda::wmma is a software model with the same
 * fragment-per-lane structure; that is where this file has been verified (docs/cuda.md). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>
#include <mma.h>

#include "cuda_internal.h"

/* WMMA with bf16 needs sm_80; for an older target the kernels compile to nothing (the stream
 * refuses flash on such a device, pt_cuda_attention_mode_env). */
#if defined(PT_CUDA_EMU) || !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define PT_FL_MMA 1
#else
#define PT_FL_MMA 0
#endif

using namespace nvcuda;
typedef __nv_bfloat16 pt_bf16;

#define PT_FL_WARPS 4
#define PT_FL_ROWS 64                /* rows a block owns: 16 per warp */
#define PT_FL_TILE 64                /* rows of a staged tile of the other side */
#define PT_FL_SLD (PT_FL_TILE + 4)   /* fp32 score tile row stride (floats) */
#define PT_FL_PLD (PT_FL_TILE + 8)   /* bf16 P / dS tile row stride */
#define PT_FL_TF (PT_FL_TILE / 16)   /* 16-wide sub-tiles of a staged tile */
#define PT_FL_HS_MAX 128

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, pt_bf16, wmma::row_major> pt_fl_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, pt_bf16, wmma::row_major> pt_fl_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, pt_bf16, wmma::col_major> pt_fl_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> pt_fl_acc;

int pt_cuda_attention_flash_fits(int hs)
{
    return hs > 0 && hs % 16 == 0 && hs <= PT_FL_HS_MAX;
}

/* Stages rows r0 .. r0+n-1 (n <= 64) of a (T, ld) fp32 matrix, columns 0..HS-1 from `base`, as bf16
 * rows of stride HS + 8 (rows at or past T are zeros). Block-cooperative; float4 reads when the
 * base is 16-byte aligned (ld and HS are multiples of 4 here). */
template <int HS>
__device__ __forceinline__ void pt_fl_stage(pt_bf16 *dst, const float *base, size_t ld, int r0, int T, bool vec)
{
    constexpr int LD = HS + 8, Q4 = HS / 4;
    for (int i = threadIdx.x; i < PT_FL_TILE * Q4; i += blockDim.x) {
        const int r = i / Q4, c = (i % Q4) * 4, t = r0 + r;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (t < T) {
            const float *src = base + (size_t)t * ld + c;
            if (vec)
                v = *reinterpret_cast<const float4 *>(src);
            else
                v = make_float4(src[0], src[1], src[2], src[3]);
        }
        pt_bf16 *d = dst + r * LD + c;
        d[0] = __float2bfloat16(v.x);
        d[1] = __float2bfloat16(v.y);
        d[2] = __float2bfloat16(v.z);
        d[3] = __float2bfloat16(v.w);
    }
}

/* Number of 16-wide sub-tiles of the tile starting at k0 that hold a column <= last (last < k0:
 * none). */
__device__ __forceinline__ int pt_fl_nsub(int k0, int last)
{
    return last < k0 ? 0 : min(PT_FL_TF, (last - k0) / 16 + 1);
}

template <int HS>
__global__ void __launch_bounds__(PT_FL_WARPS * 32)
    pt_k_flash_fwd(float *out, float *lse, const float *qkv, int T, int C, int NH, int NKV, float scale)
{
#if PT_FL_MMA
    extern __shared__ float sm[];
    constexpr int LD = HS + 8, OLD = HS + 4, NF = HS / 16;
    pt_bf16 *Qs = (pt_bf16 *)sm;                       /* [64][LD] the block's queries */
    pt_bf16 *Ks = Qs + PT_FL_ROWS * LD;                /* [64][LD] key tile */
    pt_bf16 *Vs = Ks + PT_FL_TILE * LD;                /* [64][LD] value tile */
    float *Ss = (float *)(Vs + PT_FL_TILE * LD);       /* per warp [16][SLD] scores */
    pt_bf16 *Ps = (pt_bf16 *)(Ss + PT_FL_WARPS * 16 * PT_FL_SLD); /* per warp [16][PLD] */
    float *Os = (float *)(Ps + PT_FL_WARPS * 16 * PT_FL_PLD);     /* per warp [16][OLD] */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, g = h / (NH / NKV);
    const size_t ld = (size_t)C + 2 * (size_t)NKV * HS;
    const int t0 = blockIdx.x * PT_FL_ROWS, tw = t0 + warp * 16;
    const float *qbase = qkv + (size_t)b * T * ld + (size_t)h * HS;
    const float *kbase = qkv + (size_t)b * T * ld + C + (size_t)g * HS, *vbase = kbase + (size_t)NKV * HS;
    const bool vec = ((uintptr_t)qkv & 15) == 0;
    float *Sw = Ss + warp * 16 * PT_FL_SLD, *Ow = Os + warp * 16 * OLD;
    pt_bf16 *Pw = Ps + warp * 16 * PT_FL_PLD;
    const int r = lane >> 1, half = lane & 1, t = tw + r; /* this lane's row and half of a tile row */
    const int wlast = min(tw + 15, T - 1);                /* the warp's last valid row (< tw: none) */

    pt_fl_stage<HS>(Qs, qbase, ld, t0, T, vec);
    for (int i = lane; i < 16 * OLD; i += 32)
        Ow[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int kend = min(t0 + PT_FL_ROWS, T);
    for (int k0 = 0; k0 < kend; k0 += PT_FL_TILE) {
        __syncthreads(); /* the previous tiles are no longer read (first time: Qs is written) */
        pt_fl_stage<HS>(Ks, kbase, ld, k0, T, vec);
        pt_fl_stage<HS>(Vs, vbase, ld, k0, T, vec);
        __syncthreads();
        const int nsub = pt_fl_nsub(k0, wlast); /* warp-uniform */
        if (nsub == 0)
            continue;
        /* S = Q K^T over the sub-tiles with a key <= the warp's last row */
        {
            pt_fl_acc sacc[PT_FL_TF];
#pragma unroll
            for (int n = 0; n < PT_FL_TF; n++)
                wmma::fill_fragment(sacc[n], 0.0f);
#pragma unroll
            for (int f = 0; f < NF; f++) {
                pt_fl_a qa;
                wmma::load_matrix_sync(qa, Qs + warp * 16 * LD + f * 16, LD);
#pragma unroll
                for (int n = 0; n < PT_FL_TF; n++)
                    if (n < nsub) {
                        pt_fl_b_col kb;
                        wmma::load_matrix_sync(kb, Ks + n * 16 * LD + f * 16, LD);
                        wmma::mma_sync(sacc[n], qa, kb, sacc[n]);
                    }
            }
#pragma unroll
            for (int n = 0; n < PT_FL_TF; n++)
                if (n < nsub)
                    wmma::store_matrix_sync(Sw + n * 16, sacc[n], PT_FL_SLD, wmma::mem_row_major);
        }
        __syncwarp();
        /* online softmax of row r over its 32 columns half*32 .. (masked: j > t or t >= T) */
        const float *srow = Sw + r * PT_FL_SLD + half * 32;
        pt_bf16 *prow = Pw + r * PT_FL_PLD + half * 32;
        const int jb = k0 + half * 32;
        float mx = -INFINITY;
        for (int c = 0; c < 32; c++)
            if (t < T && jb + c <= t)
                mx = fmaxf(mx, scale * srow[c]);
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float m_new = fmaxf(m, mx);
        const float corr = m_new == -INFINITY ? 1.0f : expf(m - m_new); /* first tile: exp(-inf) = 0 */
        float sum = 0.0f;
        for (int c = 0; c < 32; c++) {
            const float p = t < T && jb + c <= t ? expf(scale * srow[c] - m_new) : 0.0f;
            const pt_bf16 pb = __float2bfloat16(p);
            prow[c] = pb;
            sum += __bfloat162float(pb);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * corr + sum;
        m = m_new;
        float *orow = Ow + r * OLD + half * (HS / 2);
        for (int c = 0; c < HS / 2; c++)
            orow[c] *= corr;
        __syncwarp();
        /* O += P V */
        pt_fl_a pa[PT_FL_TF];
#pragma unroll
        for (int kk = 0; kk < PT_FL_TF; kk++)
            if (kk < nsub)
                wmma::load_matrix_sync(pa[kk], Pw + kk * 16, PT_FL_PLD);
#pragma unroll
        for (int n = 0; n < NF; n++) {
            pt_fl_acc oacc;
            wmma::load_matrix_sync(oacc, Ow + n * 16, OLD, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < PT_FL_TF; kk++)
                if (kk < nsub) {
                    pt_fl_b_row vb;
                    wmma::load_matrix_sync(vb, Vs + kk * 16 * LD + n * 16, LD);
                    wmma::mma_sync(oacc, pa[kk], vb, oacc);
                }
            wmma::store_matrix_sync(Ow + n * 16, oacc, OLD, wmma::mem_row_major);
        }
        __syncwarp();
    }
    if (t < T) {
        const float inv = 1.0f / l;
        float *orow = out + ((size_t)b * T + t) * C + (size_t)h * HS + half * (HS / 2);
        const float *src = Ow + r * OLD + half * (HS / 2);
        for (int c = 0; c < HS / 2; c++)
            orow[c] = src[c] * inv;
        if (half == 0)
            lse[(size_t)bh * T + t] = m + logf(l);
    }
#endif
}

template <int HS>
__global__ void __launch_bounds__(PT_FL_WARPS * 32)
    pt_k_flash_bwd_dq(float *dqkv, float *Dbuf, const float *dout, const float *qkv, const float *out,
                      const float *lse, int T, int C, int NH, int NKV, float scale)
{
#if PT_FL_MMA
    extern __shared__ float sm[];
    constexpr int LD = HS + 8, NF = HS / 16, GLD = HS + 4;
    pt_bf16 *Qs = (pt_bf16 *)sm;                 /* [64][LD] the block's queries */
    pt_bf16 *dOs = Qs + PT_FL_ROWS * LD;         /* [64][LD] their output gradients */
    pt_bf16 *Ks = dOs + PT_FL_ROWS * LD;         /* [64][LD] key tile */
    pt_bf16 *Vs = Ks + PT_FL_TILE * LD;          /* [64][LD] value tile */
    float *SPs = (float *)(Vs + PT_FL_TILE * LD); /* per warp: S [16][SLD], then dP [16][SLD] */
    pt_bf16 *dSs = (pt_bf16 *)(SPs + PT_FL_WARPS * 32 * PT_FL_SLD); /* per warp [16][PLD] */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, g = h / (NH / NKV);
    const size_t ld = (size_t)C + 2 * (size_t)NKV * HS;
    const int t0 = blockIdx.x * PT_FL_ROWS, tw = t0 + warp * 16;
    const float *qbase = qkv + (size_t)b * T * ld + (size_t)h * HS;
    const float *kbase = qkv + (size_t)b * T * ld + C + (size_t)g * HS, *vbase = kbase + (size_t)NKV * HS;
    const float *obase = out + (size_t)b * T * C + (size_t)h * HS, *dobase = dout + (size_t)b * T * C + (size_t)h * HS;
    const bool vec = ((uintptr_t)qkv & 15) == 0, vec_o = ((uintptr_t)dout & 15) == 0;
    float *Sw = SPs + warp * 32 * PT_FL_SLD, *dPw = Sw + 16 * PT_FL_SLD;
    pt_bf16 *dSw = dSs + warp * 16 * PT_FL_PLD;
    const int r = lane >> 1, half = lane & 1, t = tw + r;
    const int wlast = min(tw + 15, T - 1);

    pt_fl_stage<HS>(Qs, qbase, ld, t0, T, vec);
    pt_fl_stage<HS>(dOs, dobase, (size_t)C, t0, T, vec_o);
    /* D_t = dO_t . O_t in fp32 (two lanes per row, halves in order, then the pair) */
    float D = 0.0f, L = 0.0f;
    if (t < T) {
        const float *orow = obase + (size_t)t * C + half * (HS / 2), *drow = dobase + (size_t)t * C + half * (HS / 2);
        for (int c = 0; c < HS / 2; c++)
            D += drow[c] * orow[c];
        L = lse[(size_t)bh * T + t];
    }
    D += __shfl_xor_sync(0xffffffffu, D, 1);
    if (t < T && half == 0)
        Dbuf[(size_t)bh * T + t] = D;
    pt_fl_acc dq[NF];
#pragma unroll
    for (int n = 0; n < NF; n++)
        wmma::fill_fragment(dq[n], 0.0f);
    const int kend = min(t0 + PT_FL_ROWS, T);
    for (int k0 = 0; k0 < kend; k0 += PT_FL_TILE) {
        __syncthreads();
        pt_fl_stage<HS>(Ks, kbase, ld, k0, T, vec);
        pt_fl_stage<HS>(Vs, vbase, ld, k0, T, vec);
        __syncthreads();
        const int nsub = pt_fl_nsub(k0, wlast);
        if (nsub == 0)
            continue;
        {
            pt_fl_acc sacc[PT_FL_TF];
#pragma unroll
            for (int n = 0; n < PT_FL_TF; n++)
                wmma::fill_fragment(sacc[n], 0.0f);
#pragma unroll
            for (int f = 0; f < NF; f++) {
                pt_fl_a qa;
                wmma::load_matrix_sync(qa, Qs + warp * 16 * LD + f * 16, LD);
#pragma unroll
                for (int n = 0; n < PT_FL_TF; n++)
                    if (n < nsub) {
                        pt_fl_b_col kb;
                        wmma::load_matrix_sync(kb, Ks + n * 16 * LD + f * 16, LD);
                        wmma::mma_sync(sacc[n], qa, kb, sacc[n]);
                    }
            }
#pragma unroll
            for (int n = 0; n < PT_FL_TF; n++)
                if (n < nsub)
                    wmma::store_matrix_sync(Sw + n * 16, sacc[n], PT_FL_SLD, wmma::mem_row_major);
#pragma unroll
            for (int n = 0; n < PT_FL_TF; n++)
                wmma::fill_fragment(sacc[n], 0.0f);
#pragma unroll
            for (int f = 0; f < NF; f++) {
                pt_fl_a da;
                wmma::load_matrix_sync(da, dOs + warp * 16 * LD + f * 16, LD);
#pragma unroll
                for (int n = 0; n < PT_FL_TF; n++)
                    if (n < nsub) {
                        pt_fl_b_col vb;
                        wmma::load_matrix_sync(vb, Vs + n * 16 * LD + f * 16, LD);
                        wmma::mma_sync(sacc[n], da, vb, sacc[n]);
                    }
            }
#pragma unroll
            for (int n = 0; n < PT_FL_TF; n++)
                if (n < nsub)
                    wmma::store_matrix_sync(dPw + n * 16, sacc[n], PT_FL_SLD, wmma::mem_row_major);
        }
        __syncwarp();
        {
            const float *srow = Sw + r * PT_FL_SLD + half * 32, *dprow = dPw + r * PT_FL_SLD + half * 32;
            pt_bf16 *dsrow = dSw + r * PT_FL_PLD + half * 32;
            const int jb = k0 + half * 32;
            for (int c = 0; c < 32; c++) {
                float ds = 0.0f;
                if (t < T && jb + c <= t)
                    ds = expf(scale * srow[c] - L) * (dprow[c] - D);
                dsrow[c] = __float2bfloat16(ds);
            }
        }
        __syncwarp();
        /* dQ += dS K */
        pt_fl_a dsa[PT_FL_TF];
#pragma unroll
        for (int kk = 0; kk < PT_FL_TF; kk++)
            if (kk < nsub)
                wmma::load_matrix_sync(dsa[kk], dSw + kk * 16, PT_FL_PLD);
#pragma unroll
        for (int n = 0; n < NF; n++)
#pragma unroll
            for (int kk = 0; kk < PT_FL_TF; kk++)
                if (kk < nsub) {
                    pt_fl_b_row kb;
                    wmma::load_matrix_sync(kb, Ks + kk * 16 * LD + n * 16, LD);
                    wmma::mma_sync(dq[n], dsa[kk], kb, dq[n]);
                }
    }
    /* dQ through the warp's score tiles (16 x (HS + 4) floats fit in its 2 x 16 x SLD) */
    float *G = Sw;
    __syncwarp(); /* every lane is done with the score tiles (they are rewritten only here) */
#pragma unroll
    for (int n = 0; n < NF; n++)
        wmma::store_matrix_sync(G + n * 16, dq[n], GLD, wmma::mem_row_major);
    __syncwarp();
    if (t < T) {
        float *dst = dqkv + ((size_t)b * T + t) * ld + (size_t)h * HS + half * (HS / 2);
        const float *src = G + r * GLD + half * (HS / 2);
        for (int c = 0; c < HS / 2; c++)
            dst[c] = scale * src[c];
    }
#endif
}

/* Grid (key blocks, B * NKV): the block's 64 keys of kv head g; the group's query heads
 * h = g * (NH/NKV) + 0, 1, ... one after another, each over its query tiles from the block's. */
template <int HS>
__global__ void __launch_bounds__(PT_FL_WARPS * 32)
    pt_k_flash_bwd_dkv(float *dqkv, const float *Dbuf, const float *dout, const float *qkv, const float *lse,
                       int T, int C, int NH, int NKV, float scale)
{
#if PT_FL_MMA
    extern __shared__ float sm[];
    constexpr int LD = HS + 8, NF = HS / 16, GLD = HS + 4;
    pt_bf16 *Kb = (pt_bf16 *)sm;                 /* [64][LD] the block's keys */
    pt_bf16 *Vb = Kb + PT_FL_ROWS * LD;          /* [64][LD] their values */
    pt_bf16 *Qs = Vb + PT_FL_ROWS * LD;          /* [64][LD] query tile */
    pt_bf16 *dOs = Qs + PT_FL_TILE * LD;         /* [64][LD] its output gradients */
    float *Ls = (float *)(dOs + PT_FL_TILE * LD); /* [64] lse of the tile's queries */
    float *Ds = Ls + PT_FL_TILE;                 /* [64] D of the tile's queries */
    float *SPs = Ds + PT_FL_TILE;                /* per warp: S^T [16][SLD], then dP^T */
    pt_bf16 *PDs = (pt_bf16 *)(SPs + PT_FL_WARPS * 32 * PT_FL_SLD); /* per warp: P^T [16][PLD], dS^T */
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, G = NH / NKV;
    const int bg = blockIdx.y, b = bg / NKV, g = bg % NKV;
    const size_t ld = (size_t)C + 2 * (size_t)NKV * HS;
    const int j0 = blockIdx.x * PT_FL_ROWS, jw = j0 + warp * 16;
    const float *kbase = qkv + (size_t)b * T * ld + C + (size_t)g * HS, *vbase = kbase + (size_t)NKV * HS;
    const bool vec = ((uintptr_t)qkv & 15) == 0, vec_o = ((uintptr_t)dout & 15) == 0;
    float *Sw = SPs + warp * 32 * PT_FL_SLD, *dPw = Sw + 16 * PT_FL_SLD;
    pt_bf16 *Pw = PDs + warp * 32 * PT_FL_PLD, *dSw = Pw + 16 * PT_FL_PLD;
    const int r = lane >> 1, half = lane & 1, j = jw + r; /* this lane's key and half of a tile row */

    pt_fl_stage<HS>(Kb, kbase, ld, j0, T, vec);
    pt_fl_stage<HS>(Vb, vbase, ld, j0, T, vec);
    pt_fl_acc dk[NF], dv[NF];
#pragma unroll
    for (int n = 0; n < NF; n++) {
        wmma::fill_fragment(dk[n], 0.0f);
        wmma::fill_fragment(dv[n], 0.0f);
    }
    for (int hh = 0; hh < G; hh++) {
        const int h = g * G + hh, bh = b * NH + h;
        const float *qbase = qkv + (size_t)b * T * ld + (size_t)h * HS;
        const float *dobase = dout + (size_t)b * T * C + (size_t)h * HS;
        for (int q0 = j0; q0 < T; q0 += PT_FL_TILE) {
            __syncthreads(); /* the previous tiles are no longer read (first time: Kb, Vb are written) */
            pt_fl_stage<HS>(Qs, qbase, ld, q0, T, vec);
            pt_fl_stage<HS>(dOs, dobase, (size_t)C, q0, T, vec_o);
            if (threadIdx.x < PT_FL_TILE) {
                const int tq = q0 + threadIdx.x;
                Ls[threadIdx.x] = tq < T ? lse[(size_t)bh * T + tq] : 0.0f;
                Ds[threadIdx.x] = tq < T ? Dbuf[(size_t)bh * T + tq] : 0.0f;
            }
            __syncthreads();
            if (jw >= T) /* this warp has no key below T */
                continue;
            /* sub-tiles n of queries q0 + 16n .. +15 with a query >= jw and < T */
            const int nlo = jw > q0 ? (jw - q0) / 16 : 0;
            const int nhi = min(PT_FL_TF, (T - q0 + 15) / 16);
            {
                pt_fl_acc sacc[PT_FL_TF];
#pragma unroll
                for (int n = 0; n < PT_FL_TF; n++)
                    wmma::fill_fragment(sacc[n], 0.0f);
#pragma unroll
                for (int f = 0; f < NF; f++) {
                    pt_fl_a ka;
                    wmma::load_matrix_sync(ka, Kb + warp * 16 * LD + f * 16, LD);
#pragma unroll
                    for (int n = 0; n < PT_FL_TF; n++)
                        if (n >= nlo && n < nhi) {
                            pt_fl_b_col qb;
                            wmma::load_matrix_sync(qb, Qs + n * 16 * LD + f * 16, LD);
                            wmma::mma_sync(sacc[n], ka, qb, sacc[n]);
                        }
                }
#pragma unroll
                for (int n = 0; n < PT_FL_TF; n++)
                    if (n >= nlo && n < nhi)
                        wmma::store_matrix_sync(Sw + n * 16, sacc[n], PT_FL_SLD, wmma::mem_row_major);
#pragma unroll
                for (int n = 0; n < PT_FL_TF; n++)
                    wmma::fill_fragment(sacc[n], 0.0f);
#pragma unroll
                for (int f = 0; f < NF; f++) {
                    pt_fl_a va;
                    wmma::load_matrix_sync(va, Vb + warp * 16 * LD + f * 16, LD);
#pragma unroll
                    for (int n = 0; n < PT_FL_TF; n++)
                        if (n >= nlo && n < nhi) {
                            pt_fl_b_col db;
                            wmma::load_matrix_sync(db, dOs + n * 16 * LD + f * 16, LD);
                            wmma::mma_sync(sacc[n], va, db, sacc[n]);
                        }
                }
#pragma unroll
                for (int n = 0; n < PT_FL_TF; n++)
                    if (n >= nlo && n < nhi)
                        wmma::store_matrix_sync(dPw + n * 16, sacc[n], PT_FL_SLD, wmma::mem_row_major);
            }
            __syncwarp();
            {
                const float *srow = Sw + r * PT_FL_SLD + half * 32, *dprow = dPw + r * PT_FL_SLD + half * 32;
                pt_bf16 *prow = Pw + r * PT_FL_PLD + half * 32, *dsrow = dSw + r * PT_FL_PLD + half * 32;
                const int cb = half * 32;
                for (int c = 0; c < 32; c++) {
                    const int tq = q0 + cb + c;
                    float p = 0.0f, ds = 0.0f;
                    if (j < T && tq < T && tq >= j) {
                        p = expf(scale * srow[c] - Ls[cb + c]);
                        ds = p * (dprow[c] - Ds[cb + c]);
                    }
                    prow[c] = __float2bfloat16(p);
                    dsrow[c] = __float2bfloat16(ds);
                }
            }
            __syncwarp();
            /* dV += P^T dO, dK += dS^T Q */
            pt_fl_a pa[PT_FL_TF], dsa[PT_FL_TF];
#pragma unroll
            for (int kk = 0; kk < PT_FL_TF; kk++)
                if (kk >= nlo && kk < nhi) {
                    wmma::load_matrix_sync(pa[kk], Pw + kk * 16, PT_FL_PLD);
                    wmma::load_matrix_sync(dsa[kk], dSw + kk * 16, PT_FL_PLD);
                }
#pragma unroll
            for (int n = 0; n < NF; n++)
#pragma unroll
                for (int kk = 0; kk < PT_FL_TF; kk++)
                    if (kk >= nlo && kk < nhi) {
                        pt_fl_b_row ob, qb;
                        wmma::load_matrix_sync(ob, dOs + kk * 16 * LD + n * 16, LD);
                        wmma::mma_sync(dv[n], pa[kk], ob, dv[n]);
                        wmma::load_matrix_sync(qb, Qs + kk * 16 * LD + n * 16, LD);
                        wmma::mma_sync(dk[n], dsa[kk], qb, dk[n]);
                    }
        }
    }
    /* dK (scaled) and dV through the warp's score tiles, one after the other */
    float *Gs = Sw;
    __syncwarp();
#pragma unroll
    for (int n = 0; n < NF; n++)
        wmma::store_matrix_sync(Gs + n * 16, dk[n], GLD, wmma::mem_row_major);
    __syncwarp();
    float *row = dqkv + ((size_t)b * T + j) * ld + C + (size_t)g * HS + half * (HS / 2);
    const float *src = Gs + r * GLD + half * (HS / 2);
    if (j < T)
        for (int c = 0; c < HS / 2; c++)
            row[c] = scale * src[c];
    __syncwarp();
#pragma unroll
    for (int n = 0; n < NF; n++)
        wmma::store_matrix_sync(Gs + n * 16, dv[n], GLD, wmma::mem_row_major);
    __syncwarp();
    if (j < T)
        for (int c = 0; c < HS / 2; c++)
            row[(size_t)NKV * HS + c] = src[c];
#endif
}

/* ---- host side ---- */

/* Bytes of dynamic shared memory of each kernel for head size hs (the layouts above). */
static size_t pt_fl_smem_fwd(int hs)
{
    return (size_t)(PT_FL_ROWS + 2 * PT_FL_TILE) * (hs + 8) * 2 + (size_t)PT_FL_WARPS * 16 * PT_FL_SLD * 4 +
           (size_t)PT_FL_WARPS * 16 * PT_FL_PLD * 2 + (size_t)PT_FL_WARPS * 16 * (hs + 4) * 4;
}
static size_t pt_fl_smem_dq(int hs)
{
    return (size_t)(2 * PT_FL_ROWS + 2 * PT_FL_TILE) * (hs + 8) * 2 + (size_t)PT_FL_WARPS * 32 * PT_FL_SLD * 4 +
           (size_t)PT_FL_WARPS * 16 * PT_FL_PLD * 2;
}
static size_t pt_fl_smem_dkv(int hs)
{
    return (size_t)(2 * PT_FL_ROWS + 2 * PT_FL_TILE) * (hs + 8) * 2 + 2 * PT_FL_TILE * 4 +
           (size_t)PT_FL_WARPS * 32 * PT_FL_SLD * 4 + (size_t)PT_FL_WARPS * 32 * PT_FL_PLD * 2;
}

template <typename K> static pt_status pt_fl_allow_smem(K kernel, size_t bytes, const char *what)
{
    if (bytes <= 48 * 1024)
        return PT_OK;
    PT_CUDA_CHECK(cudaFuncSetAttribute((const void *)kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
                  what);
    return PT_OK;
}

static pt_status pt_fl_check(const char *what, int B, int T, int C, int NH, int NKV)
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
    if (!pt_cuda_attention_flash_fits(C / NH))
        return pt_fail(PT_ENOTSUP, "%s: head size %d (C=%d / NH=%d); the flash kernel takes a multiple of 16 up to "
                                   "%d; unset PT_CUDA_ATTENTION for the fp32 kernels", what, C / NH, C, NH,
                       PT_FL_HS_MAX);
    return PT_OK;
}

template <int HS>
static pt_status pt_fl_forward(pt_stream *s, float *out, float *saved, const float *qkv, int B, int T, int C, int NH,
                               int NKV)
{
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t smem = pt_fl_smem_fwd(HS);
    void (*kernel)(float *, float *, const float *, int, int, int, int, float) = pt_k_flash_fwd<HS>;
    PT_CHECK(pt_fl_allow_smem(kernel, smem, "attention_forward (flash) shared memory"));
    dim3 grid((T + PT_FL_ROWS - 1) / PT_FL_ROWS, B * NH);
    kernel<<<grid, PT_FL_WARPS * 32, smem, s->stream>>>(out, saved, qkv, T, C, NH, NKV, scale);
    return pt_cuda_launched("attention_forward (flash)");
}

template <int HS>
static pt_status pt_fl_backward(pt_stream *s, float *dqkv, float *scratch, const float *dout, const float *qkv,
                                const float *out, const float *saved, int B, int T, int C, int NH, int NKV)
{
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t smem_dq = pt_fl_smem_dq(HS), smem_dkv = pt_fl_smem_dkv(HS);
    void (*kdq)(float *, float *, const float *, const float *, const float *, const float *, int, int, int, int,
                float) = pt_k_flash_bwd_dq<HS>;
    void (*kdkv)(float *, const float *, const float *, const float *, const float *, int, int, int, int, float) =
        pt_k_flash_bwd_dkv<HS>;
    PT_CHECK(pt_fl_allow_smem(kdq, smem_dq, "attention_backward (flash) shared memory"));
    PT_CHECK(pt_fl_allow_smem(kdkv, smem_dkv, "attention_backward (flash) shared memory"));
    dim3 grid((T + PT_FL_ROWS - 1) / PT_FL_ROWS, B * NH);
    kdq<<<grid, PT_FL_WARPS * 32, smem_dq, s->stream>>>(dqkv, scratch, dout, qkv, out, saved, T, C, NH, NKV, scale);
    PT_CHECK(pt_cuda_launched("attention_backward (flash, dq)"));
    dim3 grid_kv((T + PT_FL_ROWS - 1) / PT_FL_ROWS, B * NKV);
    kdkv<<<grid_kv, PT_FL_WARPS * 32, smem_dkv, s->stream>>>(dqkv, scratch, dout, qkv, saved, T, C, NH, NKV, scale);
    return pt_cuda_launched("attention_backward (flash, dk, dv)");
}

#define PT_FL_HEAD_SIZES(X) X(16) X(32) X(48) X(64) X(80) X(96) X(112) X(128)

pt_status pt_cuda_attention_flash_forward(pt_stream *s, float *out, float *saved, const float *qkv, int B, int T,
                                          int C, int NH, int NKV)
{
    PT_CHECK(pt_fl_check("attention_forward (flash)", B, T, C, NH, NKV));
    switch (C / NH) {
#define PT_FL_CASE(hs) \
    case hs:           \
        return pt_fl_forward<hs>(s, out, saved, qkv, B, T, C, NH, NKV);
        PT_FL_HEAD_SIZES(PT_FL_CASE)
#undef PT_FL_CASE
    }
    return pt_fail(PT_ENOTSUP, "attention_forward (flash): head size %d", C / NH); /* pt_fl_check refused it */
}

pt_status pt_cuda_attention_flash_backward(pt_stream *s, float *dqkv, float *scratch, const float *dout,
                                           const float *qkv, const float *out, const float *saved, int B, int T,
                                           int C, int NH, int NKV)
{
    PT_CHECK(pt_fl_check("attention_backward (flash)", B, T, C, NH, NKV));
    switch (C / NH) {
#define PT_FL_CASE(hs) \
    case hs:           \
        return pt_fl_backward<hs>(s, dqkv, scratch, dout, qkv, out, saved, B, T, C, NH, NKV);
        PT_FL_HEAD_SIZES(PT_FL_CASE)
#undef PT_FL_CASE
    }
    return pt_fail(PT_ENOTSUP, "attention_backward (flash): head size %d", C / NH);
}

pt_status pt_cuda_attention_mode_env(int device, pt_cuda_att_mode *mode)
{
    *mode = PT_CUDA_ATT_FP32;
    const char *e = getenv("PT_CUDA_ATTENTION");
    if (e == NULL || *e == '\0' || strcmp(e, "fp32") == 0)
        return PT_OK;
    if (strcmp(e, "flash") != 0)
        return pt_fail(PT_EINVAL, "PT_CUDA_ATTENTION is \"%s\"; use fp32 (the default) or flash", e);
    int major = 0, minor = 0;
    PT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
                  "cudaDeviceGetAttribute (compute capability)");
    PT_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
                  "cudaDeviceGetAttribute (compute capability)");
    if (major < 8)
        return pt_fail(PT_ENOTSUP, "PT_CUDA_ATTENTION=flash needs bf16 tensor cores (compute capability 8.0 or "
                                   "later); CUDA device %d is %d.%d; unset PT_CUDA_ATTENTION on this GPU",
                       device, major, minor);
    *mode = PT_CUDA_ATT_FLASH;
    return PT_OK;
}
