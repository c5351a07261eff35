/* models/hf_internal.h — what hf.c (GPT-2) and hf_llama.c (Llama family) share for Hugging Face
 * export; internal to pt_models, not installed. */
#ifndef PT_MODELS_HF_INTERNAL_H
#define PT_MODELS_HF_INTERNAL_H

#include <stddef.h>

#include "pipetrain/model.h"

/* One tensor of an export: the chunk that holds it and the tensor. */
typedef struct pt_hf_owned {
    pt_model *m;
    const pt_param *p;
} pt_hf_owned;

/* The tensors of the n chunks (same config) in global layer order: each layer's from the first
 * chunk holding it, each name once (a chunk's tied copy of wte.weight is not listed again).
 * *out (malloc'ed, the caller frees it) gets *n_out entries; *max_numel the most elements of one
 * listed tensor (at least 1). PT_EINVAL naming `out_path` (the export target) when no chunk holds
 * some layer, PT_ENOMEM when the list cannot be allocated; *out is NULL after a failure. */
pt_status pt_hf_export_order(pt_model *const *models, int n, const char *out_path, pt_hf_owned **out, int *n_out,
                             size_t *max_numel);

/* PT_ENOTSUP naming `path` when m is split over tensor-parallel ranks (Hugging Face files hold whole
 * tensors), with the way round; PT_OK otherwise. what: "load" or "export". */
pt_status pt_hf_refuse_tp(const pt_model *m, const char *path, const char *what);

#endif
