/* ckpt.resume: resuming is exact. Training 6 steps straight, and training 6 with a checkpoint
 * after step 3 then resuming from that checkpoint for the last 3, give bitwise-identical weights,
 * AdamW moments, step counts and final losses (single process, gpt2-tiny, 1 thread). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipetrain/ckpt.h"
#include "pipetrain/train_loop.h"
#include "ref_trainer.h"

#include "ckpt_test.h"


typedef struct run_result {
    float *state; /* params, m, v back to back */
    size_t n;
    int64_t opt_steps;
    double final_loss;
    pt_status st;
} run_result;

static void run(const char *root, const char *sub, int64_t ckpt_every, int resume, run_result *r)
{
    char run_dir[600], ckpt_dir[600];
    snprintf(run_dir, sizeof run_dir, "%s/run_%s", root, sub);
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/ckpt_%s", root, resume ? "b" : sub);
    pt_train_cfg c;
    pt_train_cfg_defaults(&c);
    c.run_dir = run_dir;
    c.steps = 6;
    c.warmup = 2;
    c.threads = 1;
    c.micro_batches = 2;
    c.micro_batch_size = 2;
    c.seq_len = 32;
    c.eval_batches = 0;
    c.ckpt_dir = ckpt_dir;
    c.ckpt_every = ckpt_every;
    c.resume = resume;
    memset(r, 0, sizeof *r);
    ref_trainer *t = NULL;
    r->st = ref_trainer_create(&c, &t);
    if (r->st != PT_OK)
        return;
    pt_train_ops ops;
    ref_trainer_ops(t, &ops);
    pt_train_summary sum;
    r->st = pt_train_loop(&c, &ops, ref_trainer_start_step(t), NULL, NULL, &sum);
    if (r->st == PT_OK) {
        pt_model *m = ref_trainer_model(t);
        pt_optim *o = ref_trainer_optim(t);
        const pt_backend *be = pt_model_backend(m);
        size_t n = pt_model_n_params(m);
        r->n = n;
        r->state = malloc(3 * n * sizeof(float));
        be->memcpy_d2h(pt_model_stream(m), r->state, pt_model_params(m), n * sizeof(float));
        be->memcpy_d2h(pt_model_stream(m), r->state + n, pt_optim_m(o), n * sizeof(float));
        be->memcpy_d2h(pt_model_stream(m), r->state + 2 * n, pt_optim_v(o), n * sizeof(float));
        r->opt_steps = pt_optim_steps_done(o);
        r->final_loss = sum.final_loss;
    }
    ref_trainer_destroy(t);
}

int main(void)
{
    char root[] = "/tmp/pt_ckpt_resume_XXXXXX";
    if (!mkdtemp(root))
        return 1;
    char cmd[800];
    run_result a, b1, b2;
    run(root, "a", 0, 0, &a);
    CHECK(a.st == PT_OK, "straight run: %s", pt_last_error());
    run(root, "b", 3, 0, &b1);
    CHECK(b1.st == PT_OK, "run with checkpoints: %s", pt_last_error());
    /* keep only the checkpoint after step 3: the resumed run continues from there */
    snprintf(cmd, sizeof cmd, "rm -rf %s/ckpt_b/step_000006 %s/ckpt_b/latest", root, root);
    CHECK(system(cmd) == 0, "%s", cmd);
    run(root, "b2", 3, 1, &b2);
    CHECK(b2.st == PT_OK, "resumed run: %s", pt_last_error());
    if (a.st == PT_OK && b2.st == PT_OK) {
        CHECK(a.n == b2.n && memcmp(a.state, b2.state, 3 * a.n * sizeof(float)) == 0,
              "6 straight and 3 + resume + 3 differ");
        CHECK(memcmp(&a.final_loss, &b2.final_loss, sizeof(double)) == 0, "final loss %.17g vs %.17g", a.final_loss,
              b2.final_loss);
        CHECK(a.opt_steps == 6 && b2.opt_steps == 6, "optimizer steps %lld and %lld", (long long)a.opt_steps,
              (long long)b2.opt_steps);
        CHECK(b1.st == PT_OK && memcmp(a.state, b1.state, 3 * a.n * sizeof(float)) == 0,
              "saving checkpoints changed the run");
    }
    free(a.state);
    free(b1.state);
    free(b2.state);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", root);
    if (failures) {
        fprintf(stderr, "ckpt.resume: %d failure(s)\n", failures);
        return 1;
    }
    printf("ckpt.resume: ok\n");
    return 0;
}
