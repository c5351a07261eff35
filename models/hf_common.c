/* What the GPT-2 (hf.c) and Llama (hf_llama.c) Hugging Face exports share (hf_internal.h). */
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"

pt_status pt_hf_export_order(pt_model *const *models, int n, const char *out_path, pt_hf_owned **out, int *n_out,
                             size_t *max_numel)
{
    *out = NULL;
    *n_out = 0;
    *max_numel = 1;
    const int n_layers = pt_model_n_layers(pt_model_config_of(models[0]));
    int cap_items = 0;
    for (int k = 0; k < n; k++)
        cap_items += pt_model_n_tensors(models[k]);
    pt_hf_owned *items = calloc(cap_items > 0 ? (size_t)cap_items : 1, sizeof(*items));
    if (!items)
        return pt_fail(PT_ENOMEM, "out of memory exporting %s", out_path);
    int n_items = 0;
    size_t cap = 1;
    for (int layer = 0; layer < n_layers; layer++) {
        pt_model *owner = NULL;
        for (int k = 0; k < n && !owner; k++)
            if (pt_model_first_layer(models[k]) <= layer && layer <= pt_model_last_layer(models[k]))
                owner = models[k];
        if (!owner) {
            free(items);
            return pt_fail(PT_EINVAL, "export to %s: no chunk holds layer %d; export needs every layer 0..%d",
                           out_path, layer, n_layers - 1);
        }
        for (int i = 0; i < pt_model_n_tensors(owner); i++) {
            const pt_param *p = pt_model_tensor(owner, i);
            if (p->layer != layer)
                continue;
            int dup = 0;
            for (int j = 0; j < n_items && !dup; j++)
                dup = strcmp(items[j].p->name, p->name) == 0;
            if (dup)
                continue;
            items[n_items++] = (pt_hf_owned){ .m = owner, .p = p };
            cap = p->numel > cap ? p->numel : cap;
        }
    }
    *out = items;
    *n_out = n_items;
    *max_numel = cap;
    return PT_OK;
}

pt_status pt_hf_refuse_tp(const pt_model *m, const char *path, const char *what)
{
    const int T = pt_model_tp_size(m);
    if (T <= 1)
        return PT_OK;
    if (strcmp(what, "load") == 0)
        return pt_fail(PT_ENOTSUP, "%s: Hugging Face weights load into whole tensors, and this chunk is split over %d "
                                   "tensor-parallel ranks; start with --tp 1 and --init-from, save a checkpoint, and "
                                   "resume it with --tp %d (checkpoints reshard across T)",
                       path, T, T);
    return pt_fail(PT_ENOTSUP, "export to %s: the chunk is split over %d tensor-parallel ranks; export from a "
                               "checkpoint (pipetrain ckpt export loads it whole)",
                   path, T);
}
