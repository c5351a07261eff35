/* Published 3D-parallel training configurations, printed by `pipetrain plan` beside its own
 * choice for the same model and device count (docs/planning.md, "Tensor parallelism in the
 * planner"). Each row says what its source reports, in the source's terms. */
#include <string.h>

#include "pipetrain/partition.h"

static const pt_published_config published[] = {
    /* Llama 3 405B pre-training at 8K context: 16,384 H100 in 2,048 nodes of 8, TP 8 x CP 1 x
     * PP 16 x DP 128, 16M tokens per step (2,048 sequences of 8,192), 400 TFLOP/s per GPU, 41%
     * BF16 MFU (38-43% across the runs of the table). */
    { "Llama 3 405B", "llama3-405b", 16384, "H100", 16, 8, 128, 8192, 2048, "41% MFU (400 TFLOP/s per GPU)",
      "Grattafiori et al., The Llama 3 Herd of Models, arXiv:2407.21783, Table 4" },
    { "Llama 3 405B", "llama3-405b", 8192, "H100", 16, 8, 64, 8192, 2048, "43% MFU (430 TFLOP/s per GPU)",
      "Grattafiori et al., The Llama 3 Herd of Models, arXiv:2407.21783, Table 4" },
    /* Megatron-LM's GPT-3 175B on 1,024 A100 (DGX A100 nodes of 8): TP 8 x PP 8 x DP 16, batch
     * 1,536 of 2,048 tokens, 140 TFLOP/s per GPU = 45% of the A100's 312 TFLOP/s peak, counting
     * the activation recomputation's extra forward (hardware FLOPs: about 3/4 of that as MFU). */
    { "Megatron-LM GPT-3 175B", "gpt3-175b", 1024, "A100", 8, 8, 16, 2048, 1536,
      "45% of peak counting recomputation (140 TFLOP/s per GPU; ~34% MFU)",
      "Narayanan et al., Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM, SC21 "
      "(arXiv:2104.04473), Table 1" },
};

const pt_published_config *pt_published_table(int *n)
{
    *n = (int)(sizeof published / sizeof published[0]);
    return published;
}

const pt_published_config *pt_published_find(const char *model, int gpus)
{
    if (!model)
        return NULL;
    for (size_t i = 0; i < sizeof published / sizeof published[0]; i++)
        if (strcmp(published[i].model, model) == 0 && published[i].gpus == gpus)
            return &published[i];
    return NULL;
}
