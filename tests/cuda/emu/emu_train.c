/* tests/cuda/emu/emu_train.c — the single-process trainer (src/train/) with --backend cuda, on the
 * real CUDA backend table (kernels/cuda/cuda_backend.cu: streams, memory, copies) whose kernels
 * and CUDA runtime calls run on the emulator, against the same run with --backend cpu:
 * `test_cuda_emu_train [MODEL [STEPS [TOL [PRECISION [HEAD_CHUNK]]]]]`, gpt2-tiny (or llama-tiny), 3 (STEPS) optimizer steps of 2
 * micro-batches (B=2, T=32) on the built-in data, both backends in PRECISION (fp32, or bf16: mixed precision,
 * the CUDA backend's default, against the CPU backend's bf16 twin), the LM head in chunks of HEAD_CHUNK rows
 * (train --head-chunk; default auto: one chunk of the 64 rows). Every step's
 * loss and gradient norm must agree to TOL (relative; default 1e-4, the fp32 kernels; the
 * bf16 flash attention, PT_CUDA_ATTENTION=flash, is run with a looser one). Covers what the model test does not:
 * pt_backend_get("cuda"), stream creation with its workspace, the optimizer's AdamW and
 * gradient-norm reductions, clipping, accumulation over micro-batches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "pipetrain/train_loop.h"
#include "ref_trainer.h"

static int run(const char *backend, const char *model, const char *precision, int head_chunk, double *loss,
               double *gnorm, int n)
{
    pt_train_cfg c;
    pt_train_cfg_defaults(&c);
    c.backend = backend;
    c.precision = precision; /* both backends the same (cuda's default would be bf16) */
    c.model = model;
    c.run_dir = NULL;
    c.metrics_path = NULL;
    c.steps = n;
    c.micro_batches = 2;
    c.micro_batch_size = 2;
    c.seq_len = 32;
    c.threads = 1;
    c.eval_batches = 0;
    c.warmup = 1;
    c.head_chunk = head_chunk;
    ref_trainer *t = NULL;
    if (ref_trainer_create(&c, &t) != PT_OK) {
        fprintf(stderr, "FAIL %s trainer: %s\n", backend, pt_last_error());
        return 1;
    }
    for (int s = 0; s < n; s++) {
        pt_step_stats st;
        if (ref_train_step(t, s, c.lr, &st) != PT_OK) {
            fprintf(stderr, "FAIL %s step %d: %s\n", backend, s, pt_last_error());
            ref_trainer_destroy(t);
            return 1;
        }
        loss[s] = st.loss;
        gnorm[s] = st.grad_norm;
    }
    ref_trainer_destroy(t);
    return 0;
}

int main(int argc, char **argv)
{
    enum { NMAX = 8 };
    const char *model = argc > 1 ? argv[1] : "gpt2-tiny";
    const int N = argc > 2 ? atoi(argv[2]) : 3;
    const double tol = argc > 3 ? atof(argv[3]) : 1e-4;
    const char *precision = argc > 4 ? argv[4] : "fp32";
    const int head_chunk = argc > 5 ? atoi(argv[5]) : 0;
    if (N < 1 || N > NMAX || !(tol > 0.0) || head_chunk < 0) {
        fprintf(stderr, "usage: test_cuda_emu_train [MODEL [STEPS 1..%d [TOL > 0 [fp32|bf16 [HEAD_CHUNK rows]]]]]\n",
                NMAX);
        return 2;
    }
    double lc[NMAX], gc[NMAX], lg[NMAX], gg[NMAX];
    printf("model %s, %d steps, precision %s, head chunk %d\n", model, N, precision, head_chunk);
    if (run("cpu", model, precision, head_chunk, lc, gc, N) || run("cuda", model, precision, head_chunk, lg, gg, N))
        return 1;
    int bad = 0;
    for (int s = 0; s < N; s++) {
        int ok = fabs(lg[s] - lc[s]) <= tol * fabs(lc[s]) && fabs(gg[s] - gc[s]) <= tol * fabs(gc[s]);
        printf("%s step %d: loss %.7f (cpu %.7f, rel %.2g), grad norm %.7f (cpu %.7f, rel %.2g)\n", ok ? "ok  " : "FAIL",
               s + 1, lg[s], lc[s], fabs(lg[s] - lc[s]) / fabs(lc[s]), gg[s], gc[s], fabs(gg[s] - gc[s]) / fabs(gc[s]));
        bad |= !ok;
    }
    return bad;
}
