/* tests/cuda/tp_compare.c — tensor parallelism (`train --tp T [--sp]`, issue 18) on the CUDA
 * backend against the same job on the CPU backend.
 *
 * Started without RANK in the environment it re-launches itself as P x T x D local ranks through
 * pt_launch (what `pipetrain train --stages P --tp T --dp D` does). Every rank runs
 * pt_runtime_train_main twice on the same job (MODEL, P stages of SCHEDULE, T tensor-parallel
 * ranks, with or without --sp; 2 micro-batches of B = 2, 32 tokens, 3 steps, one thread, one
 * held-out eval at the end): first with --backend cpu, then with --backend cuda. After the last
 * step each rank copies its chunks' parameters (its tensor-parallel slices) to the host; then
 *   - rank 0: every step's loss within TOL relative of the CPU run's, its gradient norm within
 *     10 * TOL, and the eval loss within TOL;
 *   - every rank: each of its tensors within TOL_W relative L2 error (||w_cuda - w_cpu|| /
 *     ||w_cpu||) of the CPU run's slice of it, and no element further than lr from it (AdamW
 *     moves a weight by about lr a step at most, so one update lost or taken with the wrong sign
 *     shows there even in a tensor whose L2 error it would hardly move).
 * The tokens are uniform over the whole vocabulary (a token file written before the ranks start,
 * removed after): the built-in tasks' bytes stay below 128, so on the second of 2 ranks the
 * vocabulary-parallel embedding would never see a token of its rows.
 * The run's "transfers:" log line must name PATH (host-staged: every rank on the one GPU; nccl:
 * PT_EMU_GPU_PER_RANK=1 on the emulator, one GPU per rank on a real machine).
 *
 *   tp_compare TOL TOL_W PATH MODEL P T SP [SCHEDULE [LAYERS [D [ZERO [OVERLAP]]]]]
 *
 *   tp_compare refuse TEXT PATH MODEL P T SP ...       the same job on cuda only must fail on every
 *                                                      rank with an error containing TEXT
 *
 * exits 77 when no CUDA device is usable. LAYERS > 0: MODEL's preset with that many blocks (the
 * emulator's time goes with the tensors' sizes and count). D > 1: that many data-parallel replicas
 * (P x T x D ranks), with --zero ZERO and --overlap OVERLAP (0 or 1).
 *
 * Matrix products run in fp32 (PT_CUDA_MATMUL=fp32, set before the ranks start). Built against the
 * emulator by tests/cuda/CMakeLists.txt (cuda.emulated_tp_*: the real backend table, runtime, link
 * kinds and model code, CUDA runtime calls answered on the host, the kernels' own source run by the
 * fiber emulator; NCCL answered over pt_comm by emu/nccl_emu.c). It prints; exit status 0 = pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipetrain/cuda.h"
#include "pipetrain/data.h"
#include "pipetrain/model.h"
#include "pipetrain/runtime.h"
#include "pipetrain/train_loop.h"

enum { STEPS = 3, MAX_CHUNKS = 4 };

typedef struct tensor_info {
    char name[96];
    size_t offset, numel;
    int copy; /* pt_model_tensor_is_copy: a second view of a tensor (the tied head's) */
} tensor_info;

typedef struct run_log {
    int n;
    double loss[STEPS], gnorm[STEPS];
    int n_eval;
    pt_eval_stats eval;
    int n_chunks;
    float *w[MAX_CHUNKS]; /* this rank's chunks' parameters after the last step (host copies) */
    size_t nw[MAX_CHUNKS];
    int nt[MAX_CHUNKS];   /* their tensors: name, offset into w[c], elements */
    tensor_info *t[MAX_CHUNKS];
} run_log;

static char g_transfers[512];
static const char *g_model = "gpt2-tiny", *g_schedule = "1f1b";
static int g_P = 1, g_T = 2, g_sp = 0, g_D = 1, g_zero = 0, g_overlap = 0;
static pt_model_config g_cfg; /* MODEL with LAYERS blocks */
static pt_runtime *g_rt;   /* the running job's runtime (on_start) */
static run_log *g_capture; /* where after_step copies the weights */
static double g_lr;
static const char *g_refuse; /* "refuse" mode: the text the CUDA run's error must contain */

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

static void on_log(void *ctx, const char *line)
{
    (void)ctx;
    if (strncmp(line, "transfers: ", 11) == 0)
        snprintf(g_transfers, sizeof(g_transfers), "%s", line + 11);
}

static pt_status on_start(void *ctx, pt_runtime *rt, pt_comm *comm, pt_dataset *data)
{
    (void)ctx, (void)comm, (void)data;
    g_rt = rt;
    return PT_OK;
}

/* After the last step: this rank's chunks' parameters to the host. */
static pt_status after_step(void *ctx, int64_t steps_done)
{
    (void)ctx;
    if (steps_done != STEPS)
        return PT_OK;
    run_log *r = g_capture;
    r->n_chunks = pt_runtime_n_chunks(g_rt);
    if (r->n_chunks > MAX_CHUNKS)
        return pt_fail(PT_EINTERNAL, "tp_compare: %d chunks on this rank, at most %d", r->n_chunks, MAX_CHUNKS);
    for (int c = 0; c < r->n_chunks; c++) {
        pt_model *m = pt_runtime_chunk_model(g_rt, c);
        r->nw[c] = pt_model_n_params(m);
        r->w[c] = malloc(r->nw[c] * sizeof(float));
        if (!r->w[c])
            return pt_fail(PT_ENOMEM, "tp_compare: out of host memory");
        PT_CHECK(pt_model_backend(m)->memcpy_d2h(pt_model_stream(m), r->w[c], pt_model_params(m),
                                                 r->nw[c] * sizeof(float)));
        r->nt[c] = pt_model_n_tensors(m);
        r->t[c] = calloc((size_t)r->nt[c], sizeof(tensor_info));
        if (!r->t[c])
            return pt_fail(PT_ENOMEM, "tp_compare: out of host memory");
        for (int i = 0; i < r->nt[c]; i++) {
            const pt_param *p = pt_model_tensor(m, i);
            snprintf(r->t[c][i].name, sizeof r->t[c][i].name, "%s", p->name);
            r->t[c][i].offset = p->offset;
            r->t[c][i].numel = p->numel;
            r->t[c][i].copy = pt_model_tensor_is_copy(m, p);
        }
    }
    return PT_OK;
}

static void run_log_free(run_log *r)
{
    for (int c = 0; c < MAX_CHUNKS; c++) {
        free(r->w[c]);
        free(r->t[c]);
        r->w[c] = NULL;
        r->t[c] = NULL;
    }
}

static int run_pipeline(const char *backend, run_log *out)
{
    pt_runtime_train_args ta;
    memset(&ta, 0, sizeof(ta));
    pt_train_cfg *c = &ta.train;
    pt_train_cfg_defaults(c);
    c->backend = backend;
    c->precision = "fp32"; /* both backends (cuda's default is bf16) */
    c->model = g_model;
    c->data = getenv("TP_COMPARE_DATA");
    c->run_dir = NULL;
    c->metrics_path = NULL;
    c->ckpt_dir = NULL;
    c->ckpt_every = 0;
    c->steps = STEPS;
    c->micro_batches = 2;
    c->micro_batch_size = 2;
    c->seq_len = 32;
    c->threads = 1;
    c->eval_batches = 1;
    c->warmup = 1;
    g_lr = c->lr;
    ta.model_config = &g_cfg;
    ta.stages = g_P;
    ta.replicas = g_D;
    ta.zero = g_zero;
    ta.overlap = g_overlap;
    ta.tp = g_T;
    ta.sp = g_sp;
    ta.schedule = g_schedule;
    ta.partition = "uniform";
    ta.timeout_ms = 120000;
    ta.on_event = on_event;
    ta.event_ctx = out;
    ta.on_log = on_log;
    ta.on_start = on_start;
    ta.after_step = after_step;
    g_transfers[0] = '\0';
    memset(out, 0, sizeof(*out));
    g_capture = out;
    pt_train_summary sum;
    pt_status st = pt_runtime_train_main(&ta, &sum);
    if (g_refuse) { /* the run must fail, naming the reason */
        int ok = st != PT_OK && strstr(pt_last_error(), g_refuse) != NULL;
        printf("%s %s run refused: %s\n", ok ? "ok  " : "FAIL", backend,
               st != PT_OK ? pt_last_error() : "(it ran: no refusal)");
        return !ok;
    }
    if (st != PT_OK) {
        fprintf(stderr, "FAIL %s tensor-parallel run: %s (%s)\n", backend, pt_last_error(), pt_status_name(st));
        return 1;
    }
    if (sum.steps_done != STEPS || out->n_chunks < 1) {
        fprintf(stderr, "FAIL %s run: %lld steps done, want %d\n", backend, (long long)sum.steps_done, STEPS);
        return 1;
    }
    return 0;
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1.0); }

static int compare_steps(const run_log *a, const run_log *b, double tol)
{
    int bad = a->n != STEPS || b->n != STEPS;
    if (bad)
        printf("FAIL steps: %d and %d recorded, want %d\n", a->n, b->n, STEPS);
    for (int s = 0; s < STEPS && !bad; s++) {
        double rl = rel(a->loss[s], b->loss[s]), rg = rel(a->gnorm[s], b->gnorm[s]);
        int ok = isfinite(a->loss[s]) && isfinite(a->gnorm[s]) && rl <= tol && rg <= 10 * tol;
        printf("%s cuda vs cpu step %d: loss %.7f vs %.7f (rel %.2g), grad norm %.7f vs %.7f (rel %.2g)\n",
               ok ? "ok  " : "FAIL", s + 1, a->loss[s], b->loss[s], rl, a->gnorm[s], b->gnorm[s], rg);
        bad |= !ok;
    }
    double re = rel(a->eval.loss, b->eval.loss);
    int ok = a->n_eval == 1 && b->n_eval == 1 && a->eval.n_targets == b->eval.n_targets && a->eval.n_targets > 0 &&
             re <= tol;
    printf("%s cuda vs cpu eval: loss %.7f vs %.7f (rel %.2g) on %lld targets\n", ok ? "ok  " : "FAIL", a->eval.loss,
           b->eval.loss, re, (long long)a->eval.n_targets);
    return bad | !ok;
}

/* Every tensor of this rank's chunks: relative L2 error and largest element difference; one line
 * per rank with the worst of each. */
static int compare_weights(int rank, const run_log *a, const run_log *b, double tol_w)
{
    int bad = a->n_chunks != b->n_chunks;
    for (int c = 0; c < a->n_chunks && !bad; c++) {
        bad |= a->nw[c] != b->nw[c] || a->nt[c] != b->nt[c];
        for (int i = 0; i < a->nt[c] && !bad; i++)
            bad |= strcmp(a->t[c][i].name, b->t[c][i].name) != 0 || a->t[c][i].offset != b->t[c][i].offset ||
                   a->t[c][i].numel != b->t[c][i].numel;
    }
    if (bad) {
        printf("FAIL rank %d: the runs' chunks or tensors differ\n", rank);
        return 1;
    }
    const double lim_abs = g_lr;
    double worst_rel = 0, worst_abs = 0;
    const char *wr = "", *wa = "";
    int n_t = 0;
    size_t n_el = 0;
    for (int c = 0; c < a->n_chunks; c++)
        for (int i = 0; i < a->nt[c]; i++) {
            const tensor_info *ti = &a->t[c][i];
            if (ti->copy)
                continue;
            const float *x = a->w[c] + ti->offset, *y = b->w[c] + ti->offset;
            double dd = 0, yy = 0, mx = 0;
            for (size_t k = 0; k < ti->numel; k++) {
                double d = (double)x[k] - (double)y[k];
                dd += d * d;
                yy += (double)y[k] * y[k];
                if (!(fabs(d) <= mx)) /* NaN too */
                    mx = isfinite(d) ? fabs(d) : INFINITY;
            }
            double r = yy > 0 ? sqrt(dd / yy) : sqrt(dd);
            if (!isfinite(r))
                r = INFINITY;
            if (!(r <= worst_rel))
                worst_rel = r, wr = ti->name;
            if (!(mx <= worst_abs))
                worst_abs = mx, wa = ti->name;
            n_t++;
            n_el += ti->numel;
        }
    int ok = n_t > 0 && worst_rel <= tol_w && worst_abs <= lim_abs;
    printf("%s rank %d weights after %d steps, cuda vs cpu: %d tensors (%zu elements), worst relative L2 %.2g (%s), "
           "worst element %.2g (%s; bound %.2g)\n",
           ok ? "ok  " : "FAIL", rank, STEPS, n_t, n_el, worst_rel, wr, worst_abs, wa, lim_abs);
    return !ok;
}

int main(int argc, char **argv)
{
    if (argc < 8) {
        fprintf(stderr, "usage: tp_compare TOL TOL_W PATH MODEL P T SP [SCHEDULE [LAYERS [D [ZERO [OVERLAP]]]]]\n");
        return 2;
    }
    if (strcmp(argv[1], "refuse") == 0)
        g_refuse = argv[2];
    double tol = atof(argv[1]), tol_w = atof(argv[2]);
    const char *want_path = argv[3];
    g_model = argv[4];
    g_P = atoi(argv[5]);
    g_T = atoi(argv[6]);
    g_sp = atoi(argv[7]);
    if (argc > 8)
        g_schedule = argv[8];
    if (pt_model_config_load(g_model, &g_cfg) != PT_OK) {
        fprintf(stderr, "tp_compare: %s\n", pt_last_error());
        return 2;
    }
    if (argc > 10 && atoi(argv[10]) > 1)
        g_D = atoi(argv[10]);
    if (argc > 11)
        g_zero = atoi(argv[11]);
    if (argc > 12)
        g_overlap = atoi(argv[12]);
    if (argc > 9 && atoi(argv[9]) > 0) {
        g_cfg.n_layer = atoi(argv[9]);
        if (pt_model_config_validate(&g_cfg) != PT_OK) {
            fprintf(stderr, "tp_compare: %s\n", pt_last_error());
            return 2;
        }
    }
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
        char *av[14] = { self };
        for (int i = 1; i < argc && i < 13; i++)
            av[i] = argv[i];
        char dir[] = "/tmp/tp_compare.XXXXXX", data[64];
        if (!mkdtemp(dir)) {
            perror("tp_compare: mkdtemp");
            return 1;
        }
        snprintf(data, sizeof data, "%s/tokens.bin", dir);
        enum { N_TOKENS = 16384 };
        static int32_t tok[N_TOKENS];
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < N_TOKENS; i++) { /* xorshift64*: every id of the vocabulary, evenly */
            x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
            tok[i] = (int32_t)(((x * 0x2545f4914f6cdd1dull) >> 32) % (uint64_t)g_cfg.vocab_size);
        }
        pt_status st = pt_token_file_write(data, g_cfg.vocab_size, tok, N_TOKENS);
        int code = 0;
        if (st == PT_OK) {
            setenv("TP_COMPARE_DATA", data, 1);
            pt_launch_opts lo = { .nproc = g_P * g_T * g_D, .nodes = 1, .node_rank = 0, .master = NULL };
            st = pt_launch(&lo, av, &code);
        }
        if (st != PT_OK)
            fprintf(stderr, "tp_compare: %s\n", pt_last_error());
        unlink(data);
        rmdir(dir);
        return code ? code : st != PT_OK;
    }
    int rank = atoi(getenv("RANK"));
    run_log cpu, cuda;
    if (g_refuse)
        return run_pipeline("cuda", &cuda);
    if (run_pipeline("cpu", &cpu) || run_pipeline("cuda", &cuda))
        return 1;
    int bad = compare_weights(rank, &cuda, &cpu, tol_w);
    run_log_free(&cpu);
    run_log_free(&cuda);
    fflush(stdout);
    if (rank != 0)
        return bad;
    printf("%s, %d stages (%s) x %d tensor-parallel%s x %d replicas (--zero %d, --overlap %d); cuda transfers: %s\n",
           g_model, g_P, g_schedule, g_T, g_sp ? " (sequence-parallel)" : "", g_D, g_zero, g_overlap,
           g_transfers[0] ? g_transfers : "(no log line)");
    if (strncmp(g_transfers, want_path, strlen(want_path)) != 0) {
        printf("FAIL cuda run: transfers took \"%s\", want %s\n", g_transfers, want_path);
        return 1;
    }
    return bad | compare_steps(&cuda, &cpu, tol);
}
