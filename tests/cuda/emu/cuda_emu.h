/* tests/cuda/emu/cuda_emu.h — force-included (-include) before each CUDA source of the backend
 * when it is compiled as host C++ for the emulated kernel test (tests/cuda/emu/README below).
 *
 * It runs the kernels' real source on the CPU: every CUDA thread of a block is a fiber
 * (ucontext), scheduled cooperatively on one OS thread; __syncthreads and the warp shuffles are
 * scheduling points. A block's threads run until each reaches the same barrier (block or warp),
 * then the barrier releases them. Warps that diverge at a barrier, or a shuffle that a lane of
 * the warp never reaches, are reported as a deadlock instead of hanging. Uninitialised dynamic
 * shared memory is filled with NaN so that a read of a never-written element shows up.
 *
 * Tensor cores: nvcuda::wmma (m16n16k16, bf16 inputs, fp32 accumulator) is modelled in software
 * below, each lane holding its own 8 elements of a fragment as a real warp does, so a kernel that
 * uses WMMA runs unchanged (see "Software WMMA").
 *
 * What it checks: the index arithmetic, masking, tiling, reduction trees and barrier structure
 * of the kernels, against the CPU backend. What it cannot check: anything of the real hardware
 * (memory model beyond barriers, timing, occupancy, cuBLAS). The launch syntax is rewritten
 * by CMake (kernel<<<cfg>>>(args) -> pt_emu_launch(kernel, cfg, args)). */
#ifndef PT_CUDA_EMU_H
#define PT_CUDA_EMU_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <type_traits>

#undef __global__
#undef __device__
#undef __forceinline__
#undef __shared__
#undef __host__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

#define PT_CUDA_EMU 1

extern uint3 pt_emu_threadIdx, pt_emu_blockIdx;
extern dim3 pt_emu_blockDim, pt_emu_gridDim;
#define threadIdx pt_emu_threadIdx
#define blockIdx pt_emu_blockIdx
#define blockDim pt_emu_blockDim
#define gridDim pt_emu_gridDim

/* Dynamic shared memory of the running block (extern __shared__ arrays are rewritten to it). */
extern void *pt_emu_dyn_smem;

void __syncthreads();
int __syncthreads_or(int v);
/* Exchanges 8 bytes with lane `src` of the calling warp (a warp barrier). */
uint64_t pt_emu_shfl(uint64_t v, int src_lane, int xor_mask);

static inline unsigned pt_emu_lane() { return (pt_emu_threadIdx.y * pt_emu_blockDim.x + pt_emu_threadIdx.x) % 32; }

template <typename T> static inline T pt_emu_shfl_t(T v, int src, int xr)
{
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = pt_emu_shfl(bits, src, xr);
    T out;
    memcpy(&out, &bits, sizeof out);
    return out;
}
/* Publishes v and returns once every lane of the warp has arrived, with all 32 lanes' values in
 * all[lane] (a warp barrier; the building block of the software WMMA). */
void pt_emu_warp_gather(uint64_t v, uint64_t all[32]);
/* __syncwarp: a warp barrier (the mask is not modelled: the whole warp must arrive). */
static inline void __syncwarp(unsigned = 0xffffffffu) { (void)pt_emu_shfl(0, 0, -1); }

template <typename T> static inline T __shfl_sync(unsigned, T v, int src) { return pt_emu_shfl_t(v, src, -1); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int m) { return pt_emu_shfl_t(v, -1, m); }

static inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
using std::max;
using std::min;

/* ---- Software WMMA (nvcuda::wmma), m16n16k16 with bf16 inputs and fp32 accumulators ----
 * A fragment is what one lane holds: x[8]. The 256 elements of a 16x16 tile are spread over the
 * warp's 32 lanes the way PTX's mma.m16n8k16 spreads them (two n8 halves side by side), with
 * g = lane / 4, q = lane % 4:
 *   matrix_a (row m, col k) and accumulator (row m, col n): element i of lane (g, q) is
 *     row g + 8 * ((i >> 1) & 1), col 2q + (i & 1) + 8 * (i >> 2);
 *   matrix_b (row k, col n): k = 2q + (i & 1) + 8 * ((i >> 1) & 1), n = g + 8 * (i >> 2).
 * (CUDA leaves WMMA's mapping unspecified; a kernel may only apply the same operation to every
 * x[i], which is all this lets it get right.) The memory layout (row_major / col_major,
 * mem_row_major / mem_col_major) says only where load and store find element (row, col).
 *   load_matrix_sync   each lane reads its own elements from memory, and the warp does not meet:
 *                      a lane that reads elements other lanes have not written yet (a missing
 *                      __syncwarp) reads stale or NaN data. The pointer must be 32-byte aligned,
 *                      ldm a multiple of 16 bytes, and the n-th load or store of every lane of a
 *                      warp must name the same pointer and ldm (checked without a barrier);
 *   mma_sync           the warp meets, each lane computes its own elements of D = A B + C from
 *                      every lane's A and B (bf16 values, so each product is exact in fp32),
 *                      adding the 16 products to C in k order with fp32 rounding, the warp meets
 *                      again, and only then is D written (D may be C);
 *   store_matrix_sync  the same checks, then each lane writes its own elements, without a
 *                      barrier: reading another lane's elements needs a __syncwarp first.
 * The hardware adds the products in an order of its own and may round differently in the last
 * bit; kernels are checked against tolerances that allow for that. */
/* Fails the run unless p is 32-byte aligned, ldm (elements of `size` bytes) a multiple of 16
 * bytes, and this lane's n-th WMMA load or store names the same p and ldm as every other lane's
 * n-th of its warp (no barrier). */
void pt_emu_wmma_check(const char *what, const void *p, unsigned ldm, size_t size);

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the emulated WMMA models m16n16k16 only");
    static_assert((std::is_same<Use, accumulator>::value && std::is_same<T, float>::value) ||
                      (!std::is_same<Use, accumulator>::value && std::is_same<T, __nv_bfloat16>::value),
                  "the emulated WMMA models bf16 inputs with fp32 accumulators only");
    enum { num_elements = 8 };
    T x[8];
};

/* (row, col) of element i of lane `lane` in a matrix_a or accumulator fragment, and in matrix_b. */
static inline void pt_emu_wmma_ac(int lane, int i, int *r, int *c)
{
    *r = lane / 4 + 8 * ((i >> 1) & 1);
    *c = 2 * (lane % 4) + (i & 1) + 8 * (i >> 2);
}
static inline void pt_emu_wmma_b(int lane, int i, int *r, int *c)
{
    *r = 2 * (lane % 4) + (i & 1) + 8 * ((i >> 1) & 1);
    *c = lane / 4 + 8 * (i >> 2);
}

template <typename Use, typename L>
static inline void load_matrix_sync(fragment<Use, 16, 16, 16, __nv_bfloat16, L> &a, const __nv_bfloat16 *p,
                                    unsigned ldm)
{
    static_assert(std::is_same<L, row_major>::value || std::is_same<L, col_major>::value,
                  "a matrix_a / matrix_b fragment names its layout");
    const int lane = (int)pt_emu_lane();
    for (int i = 0; i < 8; i++) {
        int r, c;
        if (std::is_same<Use, matrix_a>::value)
            pt_emu_wmma_ac(lane, i, &r, &c);
        else
            pt_emu_wmma_b(lane, i, &r, &c);
        a.x[i] = std::is_same<L, row_major>::value ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
    }
    pt_emu_wmma_check("load_matrix_sync", p, ldm, sizeof *p);
}

static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &a, const float *p, unsigned ldm,
                                    layout_t layout)
{
    const int lane = (int)pt_emu_lane();
    for (int i = 0; i < 8; i++) {
        int r, c;
        pt_emu_wmma_ac(lane, i, &r, &c);
        a.x[i] = layout == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
    }
    pt_emu_wmma_check("load_matrix_sync", p, ldm, sizeof *p);
}

static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &a, unsigned ldm,
                                     layout_t layout)
{
    pt_emu_wmma_check("store_matrix_sync", p, ldm, sizeof *p);
    const int lane = (int)pt_emu_lane();
    for (int i = 0; i < 8; i++) {
        int r, c;
        pt_emu_wmma_ac(lane, i, &r, &c);
        (layout == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r]) = a.x[i];
    }
}

template <typename Use, typename T, typename L, typename V>
static inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &a, const V &v)
{
    for (int i = 0; i < 8; i++)
        a.x[i] = (T)v;
}

template <typename LA, typename LB>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                            const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
                            const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
                            const fragment<accumulator, 16, 16, 16, float> &c)
{
    uint64_t pa[32], pb[32];
    pt_emu_warp_gather((uint64_t)(uintptr_t)&a, pa);
    pt_emu_warp_gather((uint64_t)(uintptr_t)&b, pb);
    float A[16][16], Bm[16][16];
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 8; i++) {
            int r, col;
            pt_emu_wmma_ac(l, i, &r, &col);
            A[r][col] = __bfloat162float(((const __nv_bfloat16 *)(uintptr_t)pa[l])[i]);
            pt_emu_wmma_b(l, i, &r, &col);
            Bm[r][col] = __bfloat162float(((const __nv_bfloat16 *)(uintptr_t)pb[l])[i]);
        }
    const int lane = (int)pt_emu_lane();
    float out[8];
    for (int i = 0; i < 8; i++) {
        int r, col;
        pt_emu_wmma_ac(lane, i, &r, &col);
        float acc = c.x[i];
        for (int k = 0; k < 16; k++)
            acc += A[r][k] * Bm[k][col]; /* exact product (8-bit by 8-bit significands), fp32 sum */
        out[i] = acc;
    }
    __syncwarp(); /* every lane has read a and b before any lane's d (or the next load) changes */
    for (int i = 0; i < 8; i++)
        d.x[i] = out[i];
}
} // namespace wmma
} // namespace nvcuda

/* The launch every kernel<<<grid, block, smem, stream>>>(args) becomes. */
void pt_emu_run_grid(const void *kernel, dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *ctx);

template <typename... P, typename... A>
static void pt_emu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t, A... args)
{
    auto call = [&]() { kernel(args...); };
    pt_emu_run_grid((const void *)kernel, grid, block, smem, [](void *c) { (*static_cast<decltype(call) *>(c))(); }, &call);
}

#endif
