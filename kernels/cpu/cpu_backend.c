/* kernels/cpu/cpu_backend.c — the CPU backend's table (pt_backend_cpu), streams and memory.
 * The table refers to every kernel file; no kernel file refers back to it. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "pipetrain/timeutil.h"

pt_status pt_cpu_stream_create(const pt_stream_opts *opts, pt_stream **out)
{
    *out = NULL;
    int n = opts != NULL ? opts->n_threads : 0;
    if (n <= 0)
        n = omp_get_max_threads();
    if (n > 1024)
        return pt_fail(PT_EINVAL, "stream with %d threads; use at most 1024 (or <= 0 for all cores)", n);
    pt_stream *s = malloc(sizeof *s);
    if (s == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory creating a CPU stream");
    s->n_threads = n;
    pt_cpu_blas_single();
    *out = s;
    return PT_OK;
}

void pt_cpu_stream_destroy(pt_stream *s) { free(s); }

pt_status pt_cpu_stream_sync(pt_stream *s)
{
    (void)s; /* CPU kernels finish before they return */
    return PT_OK;
}

/* A marker is the host clock at its record: every call queued on a CPU stream before it has
 * finished by then. */
struct pt_marker {
    int64_t t_ns;
};

static pt_status pt_cpu_marker_create(pt_marker **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? PT_OK : pt_fail(PT_ENOMEM, "out of host memory creating a timeline marker");
}

static void pt_cpu_marker_destroy(pt_marker *m) { free(m); }

static pt_status pt_cpu_marker_record(pt_stream *s, pt_marker *m)
{
    (void)s;
    m->t_ns = pt_now_ns();
    return PT_OK;
}

static pt_status pt_cpu_marker_elapsed_ns(const pt_marker *from, const pt_marker *to, int64_t *ns)
{
    *ns = to->t_ns - from->t_ns;
    return PT_OK;
}

pt_status pt_cpu_alloc(void **ptr, size_t bytes)
{
    size_t rounded = (bytes + 255) & ~(size_t)255;
    if (rounded < bytes) {
        *ptr = NULL;
        return pt_fail(PT_ENOMEM, "cannot allocate %zu bytes of host memory (size overflows)", bytes);
    }
    *ptr = aligned_alloc(256, rounded == 0 ? 256 : rounded);
    if (*ptr == NULL)
        return pt_fail(PT_ENOMEM, "out of host memory allocating %zu bytes; use a smaller model, batch or "
                                  "more pipeline stages", bytes);
    return PT_OK;
}

void pt_cpu_free(void *ptr) { free(ptr); }

pt_status pt_cpu_memcpy(pt_stream *s, void *dst, const void *src, size_t bytes)
{
    (void)s;
    if (bytes > 0)
        memmove(dst, src, bytes);
    return PT_OK;
}

pt_status pt_cpu_memset_zero(pt_stream *s, void *dst, size_t bytes)
{
    (void)s;
    if (bytes > 0)
        memset(dst, 0, bytes);
    return PT_OK;
}

const pt_backend pt_backend_cpu = {
    .name = "cpu",
    .stream_create = pt_cpu_stream_create,
    .stream_destroy = pt_cpu_stream_destroy,
    .stream_sync = pt_cpu_stream_sync,
    .alloc = pt_cpu_alloc,
    .free = pt_cpu_free,
    .memcpy_h2d = pt_cpu_memcpy,
    .memcpy_d2h = pt_cpu_memcpy,
    .memcpy_d2d = pt_cpu_memcpy,
    .memset_zero = pt_cpu_memset_zero,
    .add = pt_cpu_add,
    .scale = pt_cpu_scale,
    .sum_squares = pt_cpu_sum_squares,
    .has_nonfinite = pt_cpu_has_nonfinite,
    .matmul_forward = pt_cpu_matmul_forward,
    .matmul_backward_input = pt_cpu_matmul_backward_input,
    .matmul_backward_weight = pt_cpu_matmul_backward_weight,
    .layernorm_forward = pt_cpu_layernorm_forward,
    .layernorm_backward_input = pt_cpu_layernorm_backward_input,
    .layernorm_backward_weight = pt_cpu_layernorm_backward_weight,
    .layernorm_backward = pt_cpu_layernorm_backward,
    .gelu_forward = pt_cpu_gelu_forward,
    .gelu_backward = pt_cpu_gelu_backward,
    .attention_saved_size = pt_cpu_attention_saved_size,
    .attention_scratch_size = pt_cpu_attention_scratch_size,
    .attention_forward = pt_cpu_attention_forward,
    .attention_backward = pt_cpu_attention_backward,
    .embedding_forward = pt_cpu_embedding_forward,
    .embedding_backward = pt_cpu_embedding_backward,
    .crossentropy_forward = pt_cpu_crossentropy_forward,
    .crossentropy_backward = pt_cpu_crossentropy_backward,
    .xent_shard_forward = pt_cpu_xent_shard_forward,
    .xent_shard_finish = pt_cpu_xent_shard_finish,
    .xent_shard_backward = pt_cpu_xent_shard_backward,
    .embedding_range_forward = pt_cpu_embedding_range_forward,
    .embedding_range_backward = pt_cpu_embedding_range_backward,
    .xent_stats_combine = pt_cpu_xent_stats_combine,
    .adamw_update = pt_cpu_adamw_update,
    .adamw_multi_update = pt_cpu_adamw_multi_update,
    .attention_decode = pt_cpu_attention_decode,
    .rmsnorm_forward = pt_cpu_rmsnorm_forward,
    .rmsnorm_backward_input = pt_cpu_rmsnorm_backward_input,
    .rmsnorm_backward_weight = pt_cpu_rmsnorm_backward_weight,
    .rmsnorm_backward = pt_cpu_rmsnorm_backward,
    .rope_forward = pt_cpu_rope_forward,
    .rope_backward = pt_cpu_rope_backward,
    .swiglu_forward = pt_cpu_swiglu_forward,
    .swiglu_backward = pt_cpu_swiglu_backward,
    .round_bf16 = pt_cpu_round_bf16,
    .pack_bf16 = pt_cpu_pack_bf16,
    .unpack_bf16_upper = pt_cpu_unpack_bf16_upper,
    .unpack_bf16 = pt_cpu_unpack_bf16,
    .round_pack_bf16 = pt_cpu_round_pack_bf16,
    .add_layernorm_forward = pt_cpu_add_layernorm_forward,
    .add_rmsnorm_forward = pt_cpu_add_rmsnorm_forward,
    .layernorm_backward_input_add = pt_cpu_layernorm_backward_input_add,
    .rmsnorm_backward_input_add = pt_cpu_rmsnorm_backward_input_add,
    .bias_gelu_forward = pt_cpu_bias_gelu_forward,
    .gelu_backward_round = pt_cpu_gelu_backward_round,
    .marker_create = pt_cpu_marker_create,
    .marker_destroy = pt_cpu_marker_destroy,
    .marker_record = pt_cpu_marker_record,
    .marker_elapsed_ns = pt_cpu_marker_elapsed_ns,
};
