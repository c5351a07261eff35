/* The settings of a run (defaults, checks, their JSON) and the one eval scorer (pipetrain/train.h).
 * The loop that drives a run is the runtime's (src/runtime/train_loop.c). */
#include "pipetrain/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/fsutil.h"
#include "pipetrain/json.h"
#include "pipetrain/timeutil.h"

void pt_train_cfg_defaults(pt_train_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->model = "gpt2-tiny";
    c->data = "builtin";
    c->backend = "cpu";
    c->seed = 1337;
    c->steps = 600;
    c->threads = 0;
    c->micro_batches = 1;
    c->micro_batch_size = 16;
    c->seq_len = 128;
    c->lr = 3e-3;
    c->lr_min = 3e-4;
    c->warmup = 30;
    c->weight_decay = 0.1;
    c->grad_clip = 1.0;
    c->beta1 = 0.9;
    c->beta2 = 0.95;
    c->eps = 1e-8;
    c->eval_every = 100;
    c->eval_batches = 8;
}

int pt_head_chunk_resolve(int arg, const pt_model_config *m, int tp, int two_phase)
{
    if (arg == PT_HEAD_CHUNK_OFF || (arg == 0 && two_phase))
        return 0;
    return arg > 0 ? arg : pt_model_head_chunk_auto(m, tp);
}

pt_status pt_train_cfg_check(const pt_train_cfg *c, const pt_model_config *m)
{
    if (c->steps < 1)
        return pt_fail(PT_EINVAL, "--steps is %lld; train at least 1 step", (long long)c->steps);
    if (c->micro_batches < 1 || c->micro_batches > 65536)
        return pt_fail(PT_EINVAL, "--micro-batches is %d; give 1 to 65536", c->micro_batches);
    if (c->micro_batch_size < 1 || c->micro_batch_size > 65536)
        return pt_fail(PT_EINVAL, "--micro-batch-size is %d; give 1 to 65536", c->micro_batch_size);
    if (c->seq_len < 1 || c->seq_len > m->max_seq_len)
        return pt_fail(PT_EINVAL, "--seq-len is %d; %s takes 1 to %d tokens", c->seq_len, m->name, m->max_seq_len);
    if (c->warmup < 0)
        return pt_fail(PT_EINVAL, "--warmup is %lld; give 0 or more steps", (long long)c->warmup);
    if (!(c->grad_clip >= 0)) /* NaN too */
        return pt_fail(PT_EINVAL, "--grad-clip %g: must be >= 0 (0 turns clipping off)", c->grad_clip);
    if (!(c->lr_min >= 0) || !(c->lr_min <= c->lr))
        return pt_fail(PT_EINVAL, "the final learning rate %g must be in [0, --lr %g]", c->lr_min, c->lr);
    if (c->eval_every < 0 || c->eval_batches < 0)
        return pt_fail(PT_EINVAL, "--eval-every and --eval-batches must be >= 0");
    if (c->ckpt_every < 0)
        return pt_fail(PT_EINVAL, "--ckpt-every is %lld; give 0 or more steps", (long long)c->ckpt_every);
    if ((c->ckpt_every > 0 || c->resume) && !c->ckpt_dir)
        return pt_fail(PT_EINVAL, "--ckpt-every and --resume need --ckpt-dir DIR");
    if (c->precision) {
        pt_precision p;
        if (pt_precision_parse(c->precision, &p) != PT_OK)
            return pt_fail(PT_EINVAL, "--precision %s: use fp32 or bf16", c->precision);
    }
    if (c->snapshot_every < 0)
        return pt_fail(PT_EINVAL, "--snapshot-every is %lld; give 0 (no snapshots) or more steps",
                       (long long)c->snapshot_every);
    if (c->snapshot_every > 0 && !c->ckpt_dir)
        return pt_fail(PT_EINVAL, "--snapshot-every needs checkpoints (--ckpt-dir DIR): the disk checkpoint is the "
                                  "fallback when no snapshot survives");
    return PT_OK;
}


/* Adds o[key] = v unless o has the key (a plan's own layout numbers stay). */
static int cfg_json_num(cJSON *o, const char *key, double v)
{
    return cJSON_HasObjectItem(o, key) || cJSON_AddNumberToObject(o, key, v);
}

pt_precision pt_train_cfg_precision(const pt_train_cfg *c)
{
    pt_precision p = PT_PRECISION_FP32;
    if (c->precision)
        return pt_precision_parse(c->precision, &p) == PT_OK ? p : PT_PRECISION_FP32;
    return c->backend && strcmp(c->backend, "cuda") == 0 ? PT_PRECISION_BF16 : PT_PRECISION_FP32;
}

pt_status pt_train_cfg_to_json(const pt_train_cfg *c, struct cJSON *o)
{
    int ok = cfg_json_num(o, "seed", (double)c->seed) && cfg_json_num(o, "steps", (double)c->steps) &&
             cfg_json_num(o, "threads", c->threads) && cfg_json_num(o, "micro_batches", c->micro_batches) &&
             cfg_json_num(o, "micro_batch_size", c->micro_batch_size) && cfg_json_num(o, "seq_len", c->seq_len) &&
             cfg_json_num(o, "lr", c->lr) && cfg_json_num(o, "lr_min", c->lr_min) &&
             cfg_json_num(o, "warmup", (double)c->warmup) && cfg_json_num(o, "weight_decay", c->weight_decay) &&
             cfg_json_num(o, "grad_clip", c->grad_clip) && cfg_json_num(o, "beta1", c->beta1) &&
             cfg_json_num(o, "beta2", c->beta2) && cfg_json_num(o, "eps", c->eps) &&
             (!c->init_from || cJSON_HasObjectItem(o, "init_from") ||
              cJSON_AddStringToObject(o, "init_from", c->init_from)) &&
             (cJSON_HasObjectItem(o, "precision") ||
              cJSON_AddStringToObject(o, "precision", pt_precision_name(pt_train_cfg_precision(c))));
    return ok ? PT_OK : pt_fail(PT_ENOMEM, "out of memory writing the run config");
}


pt_status pt_eval_score_slot(pt_model *m, int slot, const pt_dataset *data,
                             const int32_t *targets, int B, int T, int32_t *pred,
                             pt_eval_stats *acc)
{
    double ls = 0;
    int64_t nt = 0;
    PT_CHECK(pt_model_slot_loss(m, slot, &ls, &nt));
    PT_CHECK(pt_model_slot_predict(m, slot, pred));
    int64_t correct = 0, total = 0;
    pt_dataset_score(data, targets, pred, B, T, &correct, &total);
    acc->is_task = pt_dataset_is_task(data);
    acc->loss += ls;
    acc->n_targets += nt;
    acc->n_correct += correct;
    acc->n_total += total;
    return PT_OK;
}
