/* tests/common/ref_trainer.h — the single-process reference trainer, for tests only.
 *
 * One pt_model holding every layer, its AdamW optimizer, the data set and a hand-written step
 * (the step train.h describes, written out plainly). Until issue 16 this was the library's
 * one-process path; now every run executes a schedule through the runtime (a one-process run is
 * a P = 1 schedule), and the tests compare the runtime with this reference bit for bit
 * (tests/runtime/rt_driver.c --check-trainer, tests/train/test_train.c, tests/ckpt/test_ckpt_resume.c).
 *
 *     ref_trainer *t;
 *     REQUIRE(ref_trainer_create(&cfg, &t) == PT_OK);
 *     pt_train_ops ops;
 *     ref_trainer_ops(t, &ops);
 *     pt_train_loop(&cfg, &ops, ref_trainer_start_step(t), NULL, NULL, &sum);
 *     ref_trainer_destroy(t);
 *
 * Built only for the tests (library pt_ref_trainer in tests/common). */
#ifndef PT_TESTS_REF_TRAINER_H
#define PT_TESTS_REF_TRAINER_H

#include "pipetrain/train_loop.h"

typedef struct ref_trainer ref_trainer;

/* Builds everything for a single-process run of cfg: model config, backend stream with cfg->threads,
 * one pt_model with all layers (weights from cfg->seed, then cfg->init_from when set), the AdamW
 * state, the data set, the host batch buffers, and (when cfg->ckpt_dir) the checkpoint writer;
 * resumes from the newest checkpoint when cfg->resume. Writes <run_dir>/config.json. All memory
 * of a step is allocated here, none in the step. PT_EINVAL naming a bad setting. */
pt_status ref_trainer_create(const pt_train_cfg *cfg, ref_trainer **out);
void ref_trainer_destroy(ref_trainer *t); /* accepts NULL; waits for a checkpoint being written */

/* One optimizer step on data step `step` at learning rate lr (the step of train.h's top comment).
 * Does not allocate. Not thread-safe with other calls on t. */
pt_status ref_train_step(ref_trainer *t, int64_t step, double lr, pt_step_stats *out);

/* Loss and exact-match (or next-token) accuracy over cfg->eval_batches fixed held-out micro-batches
 * (eval data steps 0.., so every eval of a run sees the same problems). Does not touch gradients or
 * optimizer state. Does not allocate. */
pt_status ref_train_eval(ref_trainer *t, pt_eval_stats *out);


/* The ops of this trainer for pt_train_loop (ctx = t). */
void ref_trainer_ops(ref_trainer *t, pt_train_ops *ops);

/* The step to start the loop at: 0, or the steps done in the checkpoint resumed from. */
int64_t ref_trainer_start_step(const ref_trainer *t);

/* After a resume: "" or a sentence saying why the newest checkpoint (`latest`) was not used and
 * which one was (e.g. a damaged one was skipped). Owned by the trainer. */
const char *ref_trainer_resume_note(const ref_trainer *t);

/* "" or one line saying the model's vocabulary was enlarged to the data's tokenizer's
 * (pt_dataset_fit_model). Owned by the trainer. */
const char *ref_trainer_data_note(const ref_trainer *t);

/* Borrowed parts. */
pt_model *ref_trainer_model(ref_trainer *t);
pt_optim *ref_trainer_optim(ref_trainer *t);
pt_dataset *ref_trainer_dataset(ref_trainer *t);

#endif
