/* tests/cuda/emu/cuda_emu.cpp — the fiber scheduler behind cuda_emu.h, the few CUDA runtime
 * calls the backend's kernel files make (memory copies on the host, errors),
 * a plain column-major cublasGemmEx (so matmul.cu's mapping of
 * row-major products onto cuBLAS is checked; fp32 only), and `pt_backend_cuda_emu`: the CUDA
 * backend's kernels in a table the comparison test can drive. */
/* The fibers switch with _setjmp/_longjmp between their own stacks; the fortified longjmp would
 * take that for a corrupted stack. */
#undef _FORTIFY_SOURCE
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <map>
#include <vector>

#include "cuda_internal.h"

uint3 pt_emu_threadIdx, pt_emu_blockIdx;
dim3 pt_emu_blockDim, pt_emu_gridDim;
void *pt_emu_dyn_smem;

namespace {

enum fiber_state { RUNNABLE, WAIT_BLOCK, WAIT_WARP, DONE };

/* One fiber per thread index of a block, created once and reused by every block and launch: its
 * entry loops "run the kernel body, yield DONE". The first entry goes through swapcontext (which
 * sets the stack up); every later switch is _setjmp/_longjmp, which, unlike swapcontext, makes no
 * system call, so a block costs microseconds rather than milliseconds. */
struct fiber {
    ucontext_t ctx;
    jmp_buf jb;
    bool started;
    fiber_state state;
    uint3 tid;
    long block_phase, warp_phase;
    long wmma_seq; /* WMMA loads and stores this thread has made in its block */
    std::vector<char> stack;
};

const size_t k_max_threads = 1024;
ucontext_t g_sched_uc;
jmp_buf g_sched_jb;
std::vector<fiber> g_fibers; /* reserved once: fibers never move */
int g_cur;
void (*g_body)(void *);
void *g_ctx;
/* Barrier exchange areas, double-buffered by phase parity (see the shuffle comment). */
std::vector<uint64_t> g_warp_buf[2]; /* [warp * 32 + lane] */
int g_block_or[2];
std::map<const void *, int> g_smem_attr;
/* The warp-uniformity check of WMMA loads and stores, without a barrier: the n-th load or store
 * of each lane of a warp must name the same pointer and ldm. The first lane to make its n-th one
 * leaves them in slot n % k_wmma_ring of its warp, the others compare. */
const long k_wmma_ring = 256;
struct wmma_slot {
    long seq;
    uint64_t key;
};
std::vector<wmma_slot> g_wmma_ring; /* [warp * k_wmma_ring + n % k_wmma_ring] */
const size_t k_stack = 64 * 1024;

void yield_as(fiber_state st)
{
    fiber &f = g_fibers[g_cur];
    f.state = st;
    if (!_setjmp(f.jb))
        _longjmp(g_sched_jb, 1);
}

void fiber_entry()
{
    for (;;) {
        g_body(g_ctx);
        yield_as(DONE);
    }
}

[[noreturn]] void emu_die(const char *msg)
{
    fprintf(stderr, "FAIL cuda emulation: %s (block %u,%u)\n", msg, pt_emu_blockIdx.x, pt_emu_blockIdx.y);
    exit(1);
}

void resume(size_t i)
{
    fiber &f = g_fibers[i];
    g_cur = (int)i;
    pt_emu_threadIdx = f.tid;
    if (_setjmp(g_sched_jb))
        return; /* the fiber yielded */
    if (!f.started) {
        f.started = true;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = NULL; /* the entry never returns */
        makecontext(&f.ctx, fiber_entry, 0);
        swapcontext(&g_sched_uc, &f.ctx);
        emu_die("a fiber returned through swapcontext");
    }
    _longjmp(f.jb, 1);
}

void run_block(size_t n_threads)
{
    for (size_t i = 0; i < n_threads; i++) {
        g_fibers[i].state = RUNNABLE;
        g_fibers[i].block_phase = g_fibers[i].warp_phase = g_fibers[i].wmma_seq = 0;
    }
    g_wmma_ring.assign((n_threads + 31) / 32 * k_wmma_ring, wmma_slot{ 0, 0 });
    g_block_or[0] = g_block_or[1] = 0;
    const size_t n_warps = (n_threads + 31) / 32;
    for (;;) {
        bool progress = false;
        for (size_t i = 0; i < n_threads; i++) {
            if (g_fibers[i].state != RUNNABLE)
                continue;
            resume(i);
            progress = true;
        }
        size_t n_done = 0, n_block = 0;
        for (size_t i = 0; i < n_threads; i++) {
            n_done += g_fibers[i].state == DONE;
            n_block += g_fibers[i].state == WAIT_BLOCK;
        }
        if (n_done == n_threads)
            return;
        for (size_t w = 0; w < n_warps; w++) {
            size_t lo = w * 32, hi = std::min(lo + 32, n_threads), waiting = 0, done = 0;
            for (size_t i = lo; i < hi; i++) {
                waiting += g_fibers[i].state == WAIT_WARP;
                done += g_fibers[i].state == DONE;
            }
            if (waiting == hi - lo) {
                for (size_t i = lo; i < hi; i++)
                    g_fibers[i].state = RUNNABLE;
                progress = true;
            } else if (waiting > 0 && done > 0) {
                emu_die("a warp shuffle waits for lanes that have exited");
            }
        }
        /* Exited threads count as arrived at a block barrier (as on Volta and later). */
        if (n_block > 0 && n_block + n_done == n_threads) {
            long phase = -1;
            for (size_t i = 0; i < n_threads; i++)
                if (g_fibers[i].state == WAIT_BLOCK) {
                    if (phase >= 0 && g_fibers[i].block_phase != phase)
                        emu_die("threads wait at different __syncthreads");
                    phase = g_fibers[i].block_phase;
                    g_fibers[i].state = RUNNABLE;
                }
            g_block_or[(phase + 1) & 1] = 0; /* the next phase's accumulator starts clean */
            progress = true;
        }
        if (!progress)
            emu_die("deadlock: some threads wait at a block barrier while others of a warp wait at a shuffle");
    }
}

} // namespace

void __syncthreads()
{
    g_fibers[g_cur].block_phase++;
    yield_as(WAIT_BLOCK);
}

int __syncthreads_or(int v)
{
    fiber &f = g_fibers[g_cur];
    long p = ++f.block_phase;
    if (v)
        g_block_or[p & 1] = 1;
    yield_as(WAIT_BLOCK);
    return g_block_or[p & 1];
}

/* A lane writes its value into the buffer of its phase's parity, waits for the whole warp, then
 * reads its source lane's value. A lane cannot reach phase p+2 (same buffer) before every lane
 * has read phase p: phase p+1 releases only when all lanes arrived there. */
uint64_t pt_emu_shfl(uint64_t v, int src_lane, int xor_mask)
{
    fiber &f = g_fibers[g_cur];
    unsigned flat = f.tid.y * pt_emu_blockDim.x + f.tid.x, warp = flat / 32, lane = flat % 32;
    long p = ++f.warp_phase;
    std::vector<uint64_t> &buf = g_warp_buf[p & 1];
    buf[warp * 32 + lane] = v;
    yield_as(WAIT_WARP);
    unsigned src = xor_mask >= 0 ? (lane ^ (unsigned)xor_mask) : (unsigned)src_lane;
    if (src >= 32)
        emu_die("shuffle from a lane outside the warp");
    return buf[warp * 32 + src];
}

void pt_emu_warp_gather(uint64_t v, uint64_t all[32])
{
    fiber &f = g_fibers[g_cur];
    unsigned flat = f.tid.y * pt_emu_blockDim.x + f.tid.x, warp = flat / 32, lane = flat % 32;
    long p = ++f.warp_phase;
    std::vector<uint64_t> &buf = g_warp_buf[p & 1];
    buf[warp * 32 + lane] = v;
    yield_as(WAIT_WARP);
    if ((warp + 1) * 32 > pt_emu_blockDim.x * pt_emu_blockDim.y)
        emu_die("a warp-wide operation (WMMA) in a warp of fewer than 32 threads");
    memcpy(all, &buf[warp * 32], 32 * sizeof *all);
}

void pt_emu_wmma_check(const char *what, const void *p, unsigned ldm, size_t size)
{
    if ((uintptr_t)p % 32 != 0) {
        fprintf(stderr, "FAIL cuda emulation: %s pointer %p is not 256-bit aligned\n", what, p);
        emu_die("WMMA alignment");
    }
    if ((ldm * size) % 16 != 0) {
        fprintf(stderr, "FAIL cuda emulation: %s ldm %u is not a multiple of 16 bytes\n", what, ldm);
        emu_die("WMMA leading dimension");
    }
    fiber &f = g_fibers[g_cur];
    unsigned flat = f.tid.y * pt_emu_blockDim.x + f.tid.x, warp = flat / 32;
    if ((warp + 1) * 32 > pt_emu_blockDim.x * pt_emu_blockDim.y)
        emu_die("a warp-wide operation (WMMA) in a warp of fewer than 32 threads");
    const long n = ++f.wmma_seq;
    const uint64_t key = (uint64_t)(uintptr_t)p ^ ((uint64_t)ldm << 48);
    wmma_slot &slot = g_wmma_ring[warp * k_wmma_ring + n % k_wmma_ring];
    if (slot.seq < n) {
        slot.seq = n;
        slot.key = key;
    } else if (slot.seq > n) {
        emu_die("lanes of a warp drift more than 256 WMMA loads and stores apart (or some skip one)");
    } else if (slot.key != key) {
        fprintf(stderr, "FAIL cuda emulation: %s number %ld of a warp: pointer or ldm differs between its lanes\n",
                what, n);
        emu_die("WMMA operands not warp-uniform");
    }
}

void pt_emu_run_grid(const void *kernel, dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *ctx)
{
    size_t n_threads = (size_t)block.x * block.y * block.z;
    if (n_threads == 0 || n_threads > 1024 || block.z != 1)
        emu_die("block size outside 1..1024 (z must be 1 here)");
    if (grid.x == 0 || grid.y == 0 || grid.y > 65535 || grid.z != 1)
        emu_die("grid outside the CUDA limits");
    if (smem > 48 * 1024) {
        auto it = g_smem_attr.find(kernel);
        if (it == g_smem_attr.end() || (size_t)it->second < smem)
            emu_die("more than 48 KiB of dynamic shared memory without cudaFuncSetAttribute");
    }
    if (smem > 227 * 1024)
        emu_die("more dynamic shared memory than an H100 has");
    if (g_fibers.empty()) {
        g_fibers.reserve(k_max_threads);
        g_fibers.resize(k_max_threads);
        for (fiber &f : g_fibers) {
            f.started = false;
            f.stack.resize(k_stack);
        }
    }
    for (int k = 0; k < 2; k++)
        g_warp_buf[k].assign((n_threads + 31) / 32 * 32, 0);
    for (size_t i = 0; i < n_threads; i++)
        g_fibers[i].tid = make_uint3((unsigned)(i % block.x), (unsigned)(i / block.x), 0);
    /* 128-byte aligned, like the start of a block's dynamic shared memory (WMMA needs 32) */
    std::vector<float> dyn_store(smem / sizeof(float) + 1 + 32);
    float *dyn = (float *)(((uintptr_t)dyn_store.data() + 127) & ~(uintptr_t)127);
    const size_t n_dyn = smem / sizeof(float) + 1;
    pt_emu_blockDim = block;
    pt_emu_gridDim = grid;
    g_body = body;
    g_ctx = ctx;
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            std::fill(dyn, dyn + n_dyn, NAN);
            pt_emu_dyn_smem = dyn;
            pt_emu_blockIdx = make_uint3(bx, by, 0);
            run_block(n_threads);
        }
}

/* ---- the CUDA runtime calls the kernel files make ---- */
extern "C" {
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind, cudaStream_t)
{
    memmove(dst, src, count);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int value, size_t count, cudaStream_t)
{
    memset(p, value, count);
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
/* The pretend device is an sm_90 (H100); PT_EMU_CC=MAJOR.MINOR pretends another one, so the
 * refusals of features an older GPU lacks can be tested. */
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int)
{
    const char *cc = getenv("PT_EMU_CC");
    int major = 9, minor = 0;
    if (cc != NULL && *cc != '\0' && sscanf(cc, "%d.%d", &major, &minor) < 1)
        return cudaErrorInvalidValue;
    if (attr == cudaDevAttrComputeCapabilityMajor)
        *value = major;
    else if (attr == cudaDevAttrComputeCapabilityMinor)
        *value = minor;
    else
        return cudaErrorInvalidValue;
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value)
{
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize)
        g_smem_attr[func] = value;
    return cudaSuccess;
}
}

/* C (m,n) = alpha op(A) op(B) + beta C, column-major, as cuBLAS defines it; fp32 only. */
extern "C" cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb, int m,
                                       int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
                                       const void *B, cudaDataType Btype, int ldb, const void *beta, void *C,
                                       cudaDataType Ctype, int ldc, cublasComputeType_t, cublasGemmAlgo_t)
{
    if (Atype != CUDA_R_32F || Btype != CUDA_R_32F || Ctype != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0 || lda < (transa == CUBLAS_OP_N ? m : k) || ldb < (transb == CUBLAS_OP_N ? k : n) ||
        ldc < m)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float *a = (const float *)A, *b = (const float *)B;
    float *c = (float *)C, al = *(const float *)alpha, be = *(const float *)beta;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0.0;
            for (int l = 0; l < k; l++) {
                float x = transa == CUBLAS_OP_N ? a[i + (size_t)l * lda] : a[l + (size_t)i * lda];
                float y = transb == CUBLAS_OP_N ? b[l + (size_t)j * ldb] : b[j + (size_t)l * ldb];
                acc += (double)x * y;
            }
            float *cij = &c[i + (size_t)j * ldc];
            *cij = (float)(al * acc + (be != 0.0f ? (double)be * *cij : 0.0));
        }
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- the table ---- */
static void emu_stream_destroy(pt_stream *s);

static pt_status emu_stream_create(const pt_stream_opts *opts, pt_stream **out)
{
    pt_stream *s = (pt_stream *)calloc(1, sizeof *s);
    if (s == NULL)
        return pt_fail(PT_ENOMEM, "emulated stream");
    s->workspace_bytes = 64u << 20;
    s->workspace = aligned_alloc(256, s->workspace_bytes);
    s->host_double = (double *)malloc(sizeof(double));
    s->host_int = (int *)malloc(sizeof(int));
    /* PT_CUDA_MATMUL checked against the pretend device as on a GPU; the emulated GEMM is fp32 */
    pt_status st = pt_cuda_matmul_mode_env(0, opts != NULL && opts->fp32_products, &s->mm_mode);
    s->mm_mode = PT_CUDA_MM_FP32;
    if (st == PT_OK)
        st = pt_cuda_attention_mode_env(0, &s->att_mode); /* PT_CUDA_ATTENTION, as on a GPU */
    if (st != PT_OK) {
        emu_stream_destroy(s);
        return st;
    }
    if (s->workspace == NULL || s->host_double == NULL || s->host_int == NULL)
        return pt_fail(PT_ENOMEM, "emulated stream");
    /* NaN-filled, like unwritten device memory should be treated: a kernel must not read scratch
     * it did not write */
    float nan = NAN;
    for (size_t i = 0; i < s->workspace_bytes / sizeof(float); i++)
        memcpy((float *)s->workspace + i, &nan, sizeof nan);
    *out = s;
    return PT_OK;
}

static void emu_stream_destroy(pt_stream *s)
{
    if (s == NULL)
        return;
    free(s->workspace);
    free(s->host_double);
    free(s->host_int);
    free(s);
}

static pt_status emu_ok(pt_stream *) { return PT_OK; }

static pt_status emu_alloc(void **p, size_t bytes)
{
    *p = aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
    return *p != NULL ? PT_OK : pt_fail(PT_ENOMEM, "emulated alloc of %zu bytes", bytes);
}

static pt_status emu_copy(pt_stream *, void *dst, const void *src, size_t bytes)
{
    memmove(dst, src, bytes);
    return PT_OK;
}

static pt_status emu_memset(pt_stream *, void *dst, size_t bytes)
{
    memset(dst, 0, bytes);
    return PT_OK;
}

extern "C" const pt_backend pt_backend_cuda_emu = {
    .name = "cuda-emulated",
    .stream_create = emu_stream_create,
    .stream_destroy = emu_stream_destroy,
    .stream_sync = emu_ok,
    .alloc = emu_alloc,
    .free = free,
    .memcpy_h2d = emu_copy,
    .memcpy_d2h = emu_copy,
    .memcpy_d2d = emu_copy,
    .memset_zero = emu_memset,
    PT_CUDA_KERNEL_ENTRIES,
    .device_memory = 1,
    PT_CUDA_KERNEL_ENTRIES_LATE,
    /* no timeline markers: this table is for the kernel tests (the real table's are in cuda_backend.cu) */
    .marker_create = nullptr,
    .marker_destroy = nullptr,
    .marker_record = nullptr,
    .marker_elapsed_ns = nullptr,
};
