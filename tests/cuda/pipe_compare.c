/* tests/cuda/pipe_compare.c — a 2-stage pipeline on the CUDA backend against the CPU backend and
 * against the single-process trainer (issue 8's "2-stage pipeline on one GPU").
 *
 * Started without RANK in the environment it re-launches itself as 2 local ranks through
 * pt_launch (what `pipetrain train --stages 2` does). Both ranks run pt_runtime_train_main twice,
 * gpt2-tiny, 1F1B, 2 stages, 4 micro-batches of B=2, T=32, 3 steps, one thread: first with
 * --backend cpu, then with --backend cuda. With one GPU both ranks open it (local rank modulo the
 * GPU count); activations, gradients and the tied embedding/head all-reduce travel through host
 * buffers. Rank 0 also trains the single-process trainer with --backend cuda on the same batches.
 * Every step's loss must agree with the CPU pipeline to TOL relative and its gradient norm to
 * 10 * TOL; with the single-process CUDA run (the same kernels on the same shapes) the bounds are
 * TOL_SINGLE and 10 * TOL_SINGLE (0: the same bits).
 *
 *   pipe_compare [TOL [TOL_SINGLE]]    defaults 1e-5 and 0. Exits 77 when no CUDA device is usable.
 *
 * The run's "transfers:" log line says how data travelled between the ranks; with a third
 * argument PATH (host-staged or nccl) the CUDA run must have taken that path.
 *
 *   pipe_compare [TOL [TOL_SINGLE [PATH [SCHEDULE [REPLICAS [HEAD_SPLIT [MODEL [ZERO [PRECISION]]]]]]]]]
 *
 * SCHEDULE: 1f1b (default) or another generator. REPLICAS D > 1 runs 2 x D ranks (data parallel;
 * the single-process comparison is left out, as its batch would be D times smaller). HEAD_SPLIT:
 * the LM head as that many shard layers (0: one). MODEL: gpt2-tiny (default) or llama-tiny (no
 * tied embedding/head all-reduce: the head has its own weights). ZERO 1 (with REPLICAS > 1): both
 * pipelines run with --zero 1 (each replica steps its segment of the optimizer state, then the
 * parameters are all-gathered), and the CUDA pipeline runs a third time with --zero 0, whose
 * losses, gradient norms and eval loss must equal the --zero 1 run's within TOL_SINGLE (0: the
 * same bits; both reduce the gradients in the same fixed order). PRECISION: fp32 (default) or bf16
 * for every run (--precision; the CPU pipeline is then the CUDA pipeline's bf16 twin, and the
 * stage messages travel as bf16 on both: the run must log it).
 *
 * Matrix products run in fp32 (PT_CUDA_MATMUL=fp32, set here before the ranks start). Built twice
 * by tests/cuda/CMakeLists.txt: against the real CUDA runtime (cuda.pipeline_vs_cpu, label gpu)
 * and against the emulator (cuda.emulated_pipeline: the real backend table and runtime code, CUDA
 * runtime calls answered on the host, the kernels' own source run by the fiber emulator).
 *
 * It prints; it is a test program. Exit status 0 = pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipetrain/cuda.h"
#include "pipetrain/runtime.h"
#include "pipetrain/train_loop.h"
#include "ref_trainer.h"

enum { STEPS = 3 };

typedef struct run_log {
    int n;
    double loss[STEPS], gnorm[STEPS];
    int n_eval;          /* held-out evals seen (the loop evaluates once, at the end) */
    pt_eval_stats eval;  /* the last one */
} run_log;

static void on_event(void *ctx, const pt_train_event *ev)
{
    run_log *r = ctx;
    if (ev->kind == PT_TRAIN_EV_STEP && r->n < STEPS) {
        r->loss[r->n] = ev->st->loss;
        r->gnorm[r->n] = ev->st->grad_norm;
        r->n++;
    }
    if (ev->kind == PT_TRAIN_EV_EVAL) {
        r->eval = *ev->ev;
        r->n_eval++;
    }
}

static char g_transfers[512];
static const char *g_schedule = "1f1b";
static int g_replicas = 1;
static int g_head_split = 0; /* argv[6]: the LM head as this many shard layers (messages of two sizes) */
static const char *g_model = "gpt2-tiny"; /* argv[7] */
static int g_zero = 0; /* argv[8]: --zero for both pipelines */
static const char *g_precision = "fp32"; /* argv[9]: --precision for every run (cuda's default is bf16) */

static void on_log(void *ctx, const char *line)
{
    (void)ctx;
    if (strncmp(line, "transfers: ", 11) == 0)
        snprintf(g_transfers, sizeof(g_transfers), "%s", line + 11);
}

static void cfg_common(pt_train_cfg *c, const char *backend)
{
    pt_train_cfg_defaults(c);
    c->backend = backend;
    c->precision = g_precision;
    c->model = g_model;
    c->run_dir = NULL;
    c->metrics_path = NULL;
    c->ckpt_dir = NULL;
    c->ckpt_every = 0;
    c->steps = STEPS;
    c->micro_batches = 4;
    c->micro_batch_size = 2;
    c->seq_len = 32;
    c->threads = 1;
    c->eval_batches = 1; /* pipeline runs: one held-out eval through the pipeline at the end */
    c->warmup = 1;
    c->head_split = g_head_split;
}

static int run_pipeline(const char *backend, int zero, run_log *out)
{
    pt_runtime_train_args ta;
    memset(&ta, 0, sizeof(ta));
    cfg_common(&ta.train, backend);
    ta.stages = 2;
    ta.replicas = g_replicas;
    ta.zero = zero;
    ta.schedule = g_schedule;
    ta.partition = "uniform";
    ta.timeout_ms = 120000;
    ta.on_event = on_event;
    ta.event_ctx = out;
    ta.on_log = on_log;
    /* the first CUDA pipeline is profiled (the launcher checks its timeline, main): the profile
     * must not change a bit of it */
    if (strcmp(backend, "cuda") == 0 && zero == g_zero)
        ta.profile_dir = getenv("PT_PIPE_PROFILE_DIR");
    g_transfers[0] = '\0';
    memset(out, 0, sizeof(*out));
    pt_train_summary sum;
    pt_status st = pt_runtime_train_main(&ta, &sum);
    if (st != PT_OK) {
        fprintf(stderr, "FAIL %s pipeline (--zero %d): %s (%s)\n", backend, zero, pt_last_error(),
                pt_status_name(st));
        return 1;
    }
    if (sum.steps_done != STEPS) {
        fprintf(stderr, "FAIL %s pipeline: %lld steps done, want %d\n", backend, (long long)sum.steps_done, STEPS);
        return 1;
    }
    return 0;
}

static int run_single(const char *backend, run_log *out)
{
    pt_train_cfg c;
    cfg_common(&c, backend);
    ref_trainer *t = NULL;
    if (ref_trainer_create(&c, &t) != PT_OK) {
        fprintf(stderr, "FAIL %s trainer: %s\n", backend, pt_last_error());
        return 1;
    }
    memset(out, 0, sizeof(*out));
    for (int s = 0; s < STEPS; s++) {
        pt_step_stats st;
        if (ref_train_step(t, s, c.lr, &st) != PT_OK) {
            fprintf(stderr, "FAIL %s trainer step %d: %s\n", backend, s, pt_last_error());
            ref_trainer_destroy(t);
            return 1;
        }
        out->loss[s] = st.loss;
        out->gnorm[s] = st.grad_norm;
        out->n++;
    }
    ref_trainer_destroy(t);
    return 0;
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1.0); }

/* Compares run a with reference b step by step; prints one line per step. */
static int compare(const char *what, const run_log *a, const run_log *b, double tol)
{
    int bad = a->n != STEPS || b->n != STEPS;
    if (bad)
        printf("FAIL %s: %d and %d steps recorded, want %d\n", what, a->n, b->n, STEPS);
    for (int s = 0; s < STEPS && !bad; s++) {
        double rl = rel(a->loss[s], b->loss[s]), rg = rel(a->gnorm[s], b->gnorm[s]);
        int ok = isfinite(a->loss[s]) && isfinite(a->gnorm[s]) && rl <= tol && rg <= 10 * tol;
        printf("%s %s step %d: loss %.7f vs %.7f (rel %.2g), grad norm %.7f vs %.7f (rel %.2g)\n", ok ? "ok  " : "FAIL",
               what, s + 1, a->loss[s], b->loss[s], rl, a->gnorm[s], b->gnorm[s], rg);
        bad |= !ok;
    }
    return bad;
}

/* The held-out eval through the pipeline (pt_runtime_eval) on this transfer path against the CPU
 * pipeline's. */
static int compare_eval(const run_log *a, const run_log *b, double tol)
{
    double re = rel(a->eval.loss, b->eval.loss);
    int ok = a->n_eval == 1 && b->n_eval == 1 && a->eval.n_targets == b->eval.n_targets && a->eval.n_targets > 0 &&
             a->eval.n_total == b->eval.n_total && re <= tol;
    printf("%s cuda pipeline eval vs cpu pipeline eval: loss %.7f vs %.7f (rel %.2g) on %lld targets\n",
           ok ? "ok  " : "FAIL", a->eval.loss, b->eval.loss, re, (long long)a->eval.n_targets);
    return !ok;
}

/* The profiled CUDA pipeline's summary: its compute actions timed by the CUDA backend's timing
 * events (not the host clock after a stream sync), and a bubble measured from them. Removes the
 * profile directory. */
static int check_profile(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    FILE *f = fopen(path, "rb");
    char text[1 << 16];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f)
        fclose(f);
    text[n] = '\0';
    const char *b = strstr(text, "\"bubble_overall\"");
    int ok = strstr(text, "device timing events") != NULL && b != NULL;
    printf("%s cuda pipeline profile: %s (%s)\n", ok ? "ok  " : "FAIL",
           n == 0 ? "no summary.json" : ok ? "compute actions timed by CUDA timing events" : "not timed by events",
           path);
    static const char *const files[] = { "summary.json", "trace.json", "timeline.svg" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return !ok;
}

int main(int argc, char **argv)
{
    double tol = argc > 1 ? atof(argv[1]) : 1e-5, tol_single = argc > 2 ? atof(argv[2]) : 0.0;
    if (!getenv("RANK")) {
        int n = 0;
        char why[256] = "";
        if (pt_cuda_device_count(&n, why, sizeof(why)) != PT_OK || n < 1) {
            printf("skipped: no CUDA device (%s)\n", why);
            return 77;
        }
        setenv("PT_CUDA_MATMUL", "fp32", 1);
        char self[4096];
        ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (len <= 0)
            return 1;
        self[len] = '\0';
        char *av[] = { self, argc > 1 ? argv[1] : NULL, argc > 2 ? argv[2] : NULL, argc > 3 ? argv[3] : NULL,
                       argc > 4 ? argv[4] : NULL, argc > 5 ? argv[5] : NULL, argc > 6 ? argv[6] : NULL,
                       argc > 7 ? argv[7] : NULL, argc > 8 ? argv[8] : NULL, argc > 9 ? argv[9] : NULL, NULL };
        int replicas = argc > 5 ? atoi(argv[5]) : 1;
        pt_launch_opts lo = { .nproc = 2 * (replicas > 1 ? replicas : 1), .nodes = 1, .node_rank = 0, .master = NULL };
        char prof[] = "/tmp/pt_pipe_prof_XXXXXX";
        if (!mkdtemp(prof))
            return 1;
        setenv("PT_PIPE_PROFILE_DIR", prof, 1);
        int code = 0;
        pt_status st = pt_launch(&lo, av, &code);
        if (st != PT_OK)
            fprintf(stderr, "pipe_compare: %s\n", pt_last_error());
        int bad_prof = check_profile(prof);
        return code ? code : st != PT_OK ? 1 : bad_prof;
    }
    int rank = atoi(getenv("RANK"));
    if (argc > 4)
        g_schedule = argv[4];
    if (argc > 5 && atoi(argv[5]) > 1)
        g_replicas = atoi(argv[5]);
    if (argc > 6)
        g_head_split = atoi(argv[6]);
    if (argc > 7)
        g_model = argv[7];
    if (argc > 8)
        g_zero = atoi(argv[8]);
    if (argc > 9)
        g_precision = argv[9];
    run_log cpu, cuda, single, cuda_z0;
    if (run_pipeline("cpu", g_zero, &cpu) || run_pipeline("cuda", g_zero, &cuda))
        return 1;
    if (g_zero && run_pipeline("cuda", 0, &cuda_z0))
        return 1;
    if (rank != 0)
        return 0;
    const char *want_path = argc > 3 ? argv[3] : NULL;
    printf("cuda pipeline transfers: %s\n", g_transfers[0] ? g_transfers : "(no log line)");
    printf("model %s, LM head layers: %d, --zero %d\n", g_model, g_head_split > 1 ? g_head_split : 1, g_zero);
    if (want_path && strncmp(g_transfers, want_path, strlen(want_path)) != 0) {
        printf("FAIL cuda pipeline: transfers took \"%s\", want %s\n", g_transfers, want_path);
        return 1;
    }
    if (strcmp(g_precision, "bf16") == 0 && g_head_split <= 1 && !strstr(g_transfers, "stage messages as bf16")) {
        printf("FAIL cuda pipeline: a bf16 run's transfers (\"%s\") do not pack the messages as bf16\n", g_transfers);
        return 1;
    }
    if (strcmp(g_precision, "bf16") == 0 && g_head_split <= 1 && want_path && strcmp(want_path, "host-staged") == 0 &&
        !strstr(g_transfers, "packed on the device")) {
        printf("FAIL cuda pipeline: the host-staged link (\"%s\") does not pack on the device (fp32 over the bus)\n",
               g_transfers);
        return 1;
    }
    if (g_replicas > 1 && g_zero) {
        int bad = compare("cuda pipeline vs cpu pipeline", &cuda, &cpu, tol) | compare_eval(&cuda, &cpu, tol);
        bad |= compare("cuda pipeline --zero 1 vs --zero 0", &cuda, &cuda_z0, tol_single);
        double re = rel(cuda.eval.loss, cuda_z0.eval.loss);
        int ok = cuda.n_eval == 1 && cuda_z0.n_eval == 1 && re <= tol_single;
        printf("%s cuda pipeline eval --zero 1 vs --zero 0: loss %.9f vs %.9f (rel %.2g)\n", ok ? "ok  " : "FAIL",
               cuda.eval.loss, cuda_z0.eval.loss, re);
        return bad | !ok;
    }
    if (g_replicas > 1)
        return compare("cuda pipeline vs cpu pipeline", &cuda, &cpu, tol) | compare_eval(&cuda, &cpu, tol);
    if (run_single("cuda", &single))
        return 1;
    int bad = compare("cuda pipeline vs cpu pipeline", &cuda, &cpu, tol);
    bad |= compare_eval(&cuda, &cpu, tol);
    bad |= compare("cuda pipeline vs cuda single process", &cuda, &single, tol_single);
    return bad;
}
