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
 * What it checks: the index arithmetic, masking, tiling, reduction trees and barrier structure
 * of the kernels, against the CPU backend. What it cannot check: anything of the real hardware
 * (memory model beyond barriers, timing, occupancy, cuBLAS). The launch syntax is rewritten
 * by CMake (kernel<<<cfg>>>(args) -> pt_emu_launch(kernel, cfg, args)). */
#ifndef PT_CUDA_EMU_H
#define PT_CUDA_EMU_H

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#undef __global__
#undef __device__
#undef __forceinline__
#undef __shared__
#undef __host__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

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
template <typename T> static inline T __shfl_sync(unsigned, T v, int src) { return pt_emu_shfl_t(v, src, -1); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int m) { return pt_emu_shfl_t(v, -1, m); }

static inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}
using std::max;
using std::min;

/* The launch every kernel<<<grid, block, smem, stream>>>(args) becomes. */
void pt_emu_run_grid(const void *kernel, dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *ctx);

template <typename... P, typename... A>
static void pt_emu_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t, A... args)
{
    auto call = [&]() { kernel(args...); };
    pt_emu_run_grid((const void *)kernel, grid, block, smem, [](void *c) { (*static_cast<decltype(call) *>(c))(); }, &call);
}

#endif
