/* `pipetrain bench fused [--json] [--backend cpu|cuda] [--model gpt2] [--rows N] [--threads N]`:
 * the fused kernels a transformer block calls (issue 19, "fused kernels where memory traffic
 * dominates") against the split call sequences the blocks made before, on one backend, in fp32
 * and in bf16 (where the split sequence adds a round_bf16 pass after each call):
 *   add_norm      the residual add + layernorm (RMSNorm for llama) of a block's middle:
 *                 add, [round], layernorm_forward, [round]  vs  add_layernorm_forward
 *   norm_bwd_add  the norm's input gradient + the residual gradient:
 *                 layernorm_backward_input, [round], add, [round]  vs  layernorm_backward_input_add
 *   fc_bias_gelu  the MLP's first linear layer and GELU (gpt2 only, as gelu_bwd), the product included:
 *                 matmul_forward with the bias, [round], gelu_forward, [round]
 *                 vs  matmul_forward without it, bias_gelu_forward
 *   gelu_bwd      [round], gelu_backward, [round]  vs  gelu_backward_round
 *   head_xent     a chunk of the LM head's softmax cross-entropy, forward and backward in place over
 *                 its logits (min(rows, 1024) x the padded vocabulary): [round], crossentropy_forward,
 *                 crossentropy_backward, [round]  vs  both with their rnd flag
 * Shapes: --rows token rows (default 4096, a 4 x 1024 micro-batch) of the model's width C (and
 * 4C, or Llama's intermediate size, for the MLP). Each path runs --warmup untimed then --steps
 * timed calls per round, paths alternating over --rounds; a call is timed on the host around the
 * kernels and a stream sync. Per op, precision and path: the median and best ms, the bytes the
 * sequence moves to and from memory (each pass reading its inputs and writing its outputs once;
 * fc_bias_gelu without the product's own traffic) and the GB/s that gives; then split / fused.
 * JSON lines with --json (the table goes to stderr). The product in fc_bias_gelu is OpenBLAS's
 * sgemm on the CPU, so that op's ratio depends on OPENBLAS_CORETYPE; the others call no BLAS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/backend.h"
#include "pipetrain/model_config.h"
#include "pipetrain/timeutil.h"

enum { BF_ADD_NORM, BF_NORM_BWD, BF_FC_GELU, BF_GELU_BWD, BF_HEAD_XENT, BF_N_OPS };
static const char *const bf_op_names[BF_N_OPS] = { "add_norm", "norm_bwd_add", "fc_bias_gelu", "gelu_bwd",
                                                   "head_xent" };

typedef struct bf_bufs {
    int N, C, F, llama;
    float eps;
    float *a, *b, *res, *out, *mean, *rstd, *w, *bias, *dout, *dx, *resid; /* (N,C) and (C) */
    float *ln, *wfc, *bfc, *fch, *fchg, *dfch;                            /* (N,C), (F,C), (F), (N,F) */
    int HR, Vp;                                                           /* head rows, padded vocabulary */
    float *lg, *lg0, *losses;                                             /* (HR,Vp) twice, (HR) */
    int32_t *tg;                                                          /* (HR) */
} bf_bufs;

/* One call of op `op` by path (0 split, 1 fused) at rounding rnd. */
static pt_status bf_call(const pt_backend *be, pt_stream *s, const bf_bufs *u, int op, int path, int rnd)
{
    const int N = u->N, C = u->C, F = u->F;
    const size_t nc = (size_t)N * C, nf = (size_t)N * F;
    switch (op) {
    case BF_ADD_NORM:
        if (path)
            return u->llama ? be->add_rmsnorm_forward(s, u->res, u->out, u->rstd, u->a, u->b, u->w, N, C, u->eps, rnd)
                            : be->add_layernorm_forward(s, u->res, u->out, u->mean, u->rstd, u->a, u->b, u->w,
                                                        u->bias, N, C, rnd);
        PT_CHECK(be->add(s, u->res, u->a, u->b, nc));
        if (rnd)
            PT_CHECK(be->round_bf16(s, u->res, u->res, nc));
        if (u->llama)
            PT_CHECK(be->rmsnorm_forward(s, u->out, u->rstd, u->res, u->w, N, C, u->eps));
        else
            PT_CHECK(be->layernorm_forward(s, u->out, u->mean, u->rstd, u->res, u->w, u->bias, N, C));
        return rnd ? be->round_bf16(s, u->out, u->out, nc) : PT_OK;
    case BF_NORM_BWD:
        if (path)
            return u->llama ? be->rmsnorm_backward_input_add(s, u->dx, u->dout, u->res, u->w, u->rstd, u->resid, N, C,
                                                             rnd)
                            : be->layernorm_backward_input_add(s, u->dx, u->dout, u->res, u->w, u->mean, u->rstd,
                                                               u->resid, N, C, rnd);
        if (u->llama)
            PT_CHECK(be->rmsnorm_backward_input(s, u->dx, u->dout, u->res, u->w, u->rstd, N, C));
        else
            PT_CHECK(be->layernorm_backward_input(s, u->dx, u->dout, u->res, u->w, u->mean, u->rstd, N, C));
        if (rnd)
            PT_CHECK(be->round_bf16(s, u->dx, u->dx, nc));
        PT_CHECK(be->add(s, u->dx, u->dx, u->resid, nc));
        return rnd ? be->round_bf16(s, u->dx, u->dx, nc) : PT_OK;
    case BF_FC_GELU:
        if (path) {
            PT_CHECK(be->matmul_forward(s, u->fch, u->ln, u->wfc, NULL, N, C, F));
            return be->bias_gelu_forward(s, u->fch, u->fchg, u->bfc, N, F, rnd);
        }
        PT_CHECK(be->matmul_forward(s, u->fch, u->ln, u->wfc, u->bfc, N, C, F));
        if (rnd)
            PT_CHECK(be->round_bf16(s, u->fch, u->fch, nf));
        PT_CHECK(be->gelu_forward(s, u->fchg, u->fch, nf));
        return rnd ? be->round_bf16(s, u->fchg, u->fchg, nf) : PT_OK;
    case BF_HEAD_XENT: {
        const size_t nv = (size_t)u->HR * u->Vp;
        const float dloss = 1.0f / (float)u->HR;
        if (path) {
            PT_CHECK(be->crossentropy_forward(s, u->losses, u->lg, u->lg, u->tg, u->HR, u->Vp, rnd));
            return be->crossentropy_backward(s, u->lg, u->lg, u->tg, dloss, u->HR, u->Vp, rnd);
        }
        if (rnd)
            PT_CHECK(be->round_bf16(s, u->lg, u->lg, nv));
        PT_CHECK(be->crossentropy_forward(s, u->losses, u->lg, u->lg, u->tg, u->HR, u->Vp, 0));
        PT_CHECK(be->crossentropy_backward(s, u->lg, u->lg, u->tg, dloss, u->HR, u->Vp, 0));
        return rnd ? be->round_bf16(s, u->lg, u->lg, nv) : PT_OK;
    }
    default: /* BF_GELU_BWD, in place on dfch as the blocks do */
        if (path)
            return be->gelu_backward_round(s, u->dfch, u->fch, u->dfch, nf, rnd);
        if (rnd)
            PT_CHECK(be->round_bf16(s, u->dfch, u->dfch, nf));
        PT_CHECK(be->gelu_backward(s, u->dfch, u->fch, u->dfch, nf));
        return rnd ? be->round_bf16(s, u->dfch, u->dfch, nf) : PT_OK;
    }
}

/* Floats moved per element of the op's (N,C) or (N,F) tensor: each pass reads its inputs and
 * writes its outputs once (a norm's row stays in cache between its passes). */
static double bf_floats(int op, int path, int rnd)
{
    switch (op) {
    case BF_ADD_NORM:  /* add r2 w1, norm r1 w1, each round r1 w1  |  r2 w2 */
        return path ? 4 : 5 + 4 * rnd;
    case BF_NORM_BWD:  /* backward r2 w1, add r2 w1, rounds  |  r3 w1 */
        return path ? 4 : 6 + 4 * rnd;
    case BF_FC_GELU:   /* the bias into the product's output w1 r1, gelu r1 w1, rounds  |  bias_gelu r1 w2 */
        return path ? 3 : 4 + 4 * rnd;
    case BF_HEAD_XENT: /* forward r1 w1 (a row stays in cache), backward r1 w1, rounds  |  the same, no rounds */
        return path ? 4 : 4 + 4 * rnd;
    default:           /* gelu_backward r2 w1, rounds  |  r2 w1 */
        return path ? 3 : 3 + 4 * rnd;
    }
}

static pt_status bf_alloc(const pt_backend *be, pt_stream *s, float **p, size_t n, uint64_t *r, float scale)
{
    PT_CHECK(pt_backend_alloc(be, (void **)p, n * sizeof(float)));
    float *h = malloc(n * sizeof(float));
    if (!h)
        return pt_fail(PT_ENOMEM, "out of host memory for %zu floats", n);
    for (size_t i = 0; i < n; i++) {
        *r ^= *r << 13;
        *r ^= *r >> 7;
        *r ^= *r << 17;
        h[i] = (float)((double)(*r >> 40) / 8388608.0 - 1.0) * scale;
    }
    pt_status st = be->memcpy_h2d(s, *p, h, n * sizeof(float));
    free(h);
    return st;
}

static void bf_free(const pt_backend *be, bf_bufs *u)
{
    float *all[] = { u->a,   u->b,   u->res, u->out, u->mean, u->rstd, u->w,  u->bias,  u->dout, u->dx,
                     u->resid, u->ln, u->wfc, u->bfc, u->fch,  u->fchg, u->dfch, u->lg, u->lg0, u->losses };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        pt_backend_free(be, all[i]);
    pt_backend_free(be, u->tg);
}

int pt_bench_fused(int argc, char **argv)
{
    int json = 0, threads = 0, steps = 10, warmup = 2, rounds = 3, rows = 4096;
    const char *model = "gpt2", *backend = "cpu";
    pt_opt opts[] = {
        { "json", PT_OPT_FLAG, &json, NULL, "one JSON object per line on stdout (the table goes to stderr)", 0 },
        { "model", PT_OPT_STRING, &model, "NAME|FILE", "model preset or JSON config (its width and MLP)", 0 },
        { "backend", PT_OPT_STRING, &backend, "NAME", "cpu or cuda", 0 },
        { "rows", PT_OPT_INT, &rows, "N", "token rows (micro-batch size x sequence length)", 0 },
        { "threads", PT_OPT_INT, &threads, "N", "CPU threads (0: all cores; ignored on cuda)", 0 },
        { "steps", PT_OPT_INT, &steps, "N", "timed calls per path and round", 0 },
        { "warmup", PT_OPT_INT, &warmup, "N", "untimed calls before them", 0 },
        { "rounds", PT_OPT_INT, &rounds, "N", "rounds of both paths, alternating", 0 },
    };
    pt_cmd_spec spec = {
        "pipetrain bench fused [--json] [--backend cpu|cuda] [--model gpt2] [--rows N] [--threads N]",
        "The fused kernels of a transformer block (residual add + norm, the norm's input gradient +\n"
        "the residual gradient, the fc bias + GELU, the GELU gradient with its bf16 roundings, the LM\n"
        "head's cross-entropy rounding its logits and their gradient) against\n"
        "the split call sequences they replace, in fp32 and bf16: median and best ms, the bytes each\n"
        "sequence moves and the GB/s that gives, and split / fused. Both give the same bits (tests:\n"
        "kernels.fused, cuda.emulated_fused).",
        opts,
        (int)(sizeof opts / sizeof opts[0]),
        NULL,
    };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    if (steps < 1 || warmup < 0 || threads < 0 || rounds < 1 || rows < 1)
        return pt_cli_finish(
            pt_fail(PT_EINVAL, "--steps, --rounds and --rows must be >= 1, --warmup and --threads >= 0"));
    const pt_backend *be;
    if ((st = pt_backend_get(backend, &be)) != PT_OK)
        return pt_cli_finish(st);
    pt_model_config cfg;
    if ((st = pt_model_config_load(model, &cfg)) != PT_OK)
        return pt_cli_finish(st);
    bf_bufs u = { .N = rows, .C = cfg.n_embd, .llama = cfg.arch == PT_ARCH_LLAMA };
    u.F = u.llama ? cfg.intermediate_size : 4 * cfg.n_embd;
    u.eps = u.llama ? cfg.rms_norm_eps : 1e-5f;
    pt_stream *s = NULL;
    double *times = malloc(2 * (size_t)rounds * steps * sizeof *times);
    if (!times)
        return pt_cli_finish(pt_fail(PT_ENOMEM, "out of memory for the call times"));
    FILE *tab = json ? stderr : stdout;
    const size_t nc = (size_t)u.N * u.C, nf = (size_t)u.N * u.F;
    uint64_t r = 0x9E3779B97F4A7C15ull;
    PT_TRY(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = threads }, &s), out);
    float **nc_bufs[] = { &u.a, &u.b, &u.res, &u.out, &u.dout, &u.dx, &u.resid, &u.ln };
    for (size_t i = 0; i < sizeof nc_bufs / sizeof nc_bufs[0]; i++)
        PT_TRY(bf_alloc(be, s, nc_bufs[i], nc, &r, 1.0f), out);
    PT_TRY(bf_alloc(be, s, &u.mean, (size_t)u.N, &r, 0.1f), out);
    PT_TRY(bf_alloc(be, s, &u.rstd, (size_t)u.N, &r, 1.0f), out);
    PT_TRY(bf_alloc(be, s, &u.w, (size_t)u.C, &r, 1.0f), out);
    PT_TRY(bf_alloc(be, s, &u.bias, (size_t)u.C, &r, 1.0f), out);
    PT_TRY(bf_alloc(be, s, &u.wfc, (size_t)u.F * u.C, &r, 0.02f), out);
    PT_TRY(bf_alloc(be, s, &u.bfc, (size_t)u.F, &r, 0.02f), out);
    PT_TRY(bf_alloc(be, s, &u.fch, nf, &r, 2.0f), out);
    PT_TRY(bf_alloc(be, s, &u.fchg, nf, &r, 1.0f), out);
    PT_TRY(bf_alloc(be, s, &u.dfch, nf, &r, 1.0f), out);
    u.HR = u.N < 1024 ? u.N : 1024;
    u.Vp = cfg.vocab_padded;
    const size_t nv = (size_t)u.HR * u.Vp;
    PT_TRY(bf_alloc(be, s, &u.lg0, nv, &r, 8.0f), out);
    PT_TRY(bf_alloc(be, s, &u.lg, nv, &r, 1.0f), out);
    PT_TRY(bf_alloc(be, s, &u.losses, (size_t)u.HR, &r, 1.0f), out);
    {
        int32_t *ht = malloc((size_t)u.HR * sizeof *ht);
        if (!ht) {
            st = pt_fail(PT_ENOMEM, "out of host memory for %d targets", u.HR);
            goto out;
        }
        for (int i = 0; i < u.HR; i++)
            ht[i] = (int32_t)((unsigned)(i * 7919) % (unsigned)cfg.vocab_size);
        st = pt_backend_alloc(be, (void **)&u.tg, (size_t)u.HR * sizeof *ht);
        if (st == PT_OK)
            st = be->memcpy_h2d(s, u.tg, ht, (size_t)u.HR * sizeof *ht);
        free(ht);
        if (st != PT_OK)
            goto out;
    }
    fprintf(tab, "bench fused: %s on %s, %d rows x C %d (MLP %d), %d round(s) x %d call(s) per path after %d warm-up\n",
            model, be->name, u.N, u.C, u.F, rounds, steps, warmup);
    fprintf(tab, "%-13s %-5s %-6s %10s %10s %9s %8s\n", "op", "prec", "path", "median ms", "best ms", "MB moved",
            "GB/s");
    for (int op = 0; op < BF_N_OPS && st == PT_OK; op++) {
        if ((op == BF_FC_GELU || op == BF_GELU_BWD) && u.llama)
            continue; /* llama's MLP is gate/up + SwiGLU: no bias, no GELU */
        for (int rnd = 0; rnd < 2 && st == PT_OK; rnd++) {
            double med[2], best[2];
            for (int round = 0; round < rounds; round++)
                for (int path = 0; path < 2; path++)
                    for (int k = 0; k < warmup + steps; k++) {
                        if (op == BF_GELU_BWD) /* in place: start from the same gradient each call */
                            PT_TRY(be->memcpy_d2d(s, u.dfch, u.fchg, nf * sizeof(float)), out);
                        if (op == BF_HEAD_XENT) /* and from the same logits */
                            PT_TRY(be->memcpy_d2d(s, u.lg, u.lg0, nv * sizeof(float)), out);
                        PT_TRY(be->stream_sync(s), out);
                        int64_t t0 = pt_now_ns();
                        PT_TRY(bf_call(be, s, &u, op, path, rnd), out);
                        PT_TRY(be->stream_sync(s), out);
                        if (k >= warmup)
                            times[(size_t)path * rounds * steps + (size_t)round * steps + (k - warmup)] =
                                1e3 * pt_seconds_between(t0, pt_now_ns());
                    }
            for (int path = 0; path < 2; path++) {
                double *x = times + (size_t)path * rounds * steps;
                size_t cnt = (size_t)rounds * steps;
                med[path] = pt_cli_median(x, cnt);
                best[path] = x[0];
                const size_t elems = op == BF_ADD_NORM || op == BF_NORM_BWD ? nc : op == BF_HEAD_XENT ? nv : nf;
                const double mb = bf_floats(op, path, rnd) * 4.0 * (double)elems / 1e6;
                const double gbs = mb / 1e3 / (med[path] * 1e-3);
                const char *pn = path ? "fused" : "split", *prec = rnd ? "bf16" : "fp32";
                if (json)
                    printf("{\"bench\":\"fused\",\"model\":\"%s\",\"backend\":\"%s\",\"threads\":%d,\"rows\":%d,"
                           "\"C\":%d,\"F\":%d,\"op\":\"%s\",\"precision\":\"%s\",\"path\":\"%s\",\"median_ms\":%.4f,"
                           "\"min_ms\":%.4f,\"MB_moved\":%.2f,\"GB_per_s\":%.2f}\n",
                           model, be->name, threads, u.N, u.C, u.F, bf_op_names[op], prec, pn, med[path], best[path],
                           mb, gbs);
                fprintf(tab, "%-13s %-5s %-6s %10.3f %10.3f %9.1f %8.2f\n", bf_op_names[op], prec, pn, med[path],
                        best[path], mb, gbs);
            }
            if (json)
                printf("{\"bench\":\"fused\",\"model\":\"%s\",\"backend\":\"%s\",\"op\":\"%s\",\"precision\":\"%s\","
                       "\"path\":\"ratio\",\"split_over_fused_median\":%.4f,\"split_over_fused_min\":%.4f,"
                       "\"bytes_split_over_fused\":%.4f}\n",
                       model, be->name, bf_op_names[op], rnd ? "bf16" : "fp32", med[0] / med[1], best[0] / best[1],
                       bf_floats(op, 0, rnd) / bf_floats(op, 1, rnd));
            fprintf(tab, "%-13s %-5s split / fused: %.3f (median), %.3f (best); bytes %.2f\n", bf_op_names[op],
                    rnd ? "bf16" : "fp32", med[0] / med[1], best[0] / best[1],
                    bf_floats(op, 0, rnd) / bf_floats(op, 1, rnd));
            fflush(stdout);
        }
    }
out:
    bf_free(be, &u);
    if (s)
        be->stream_destroy(s);
    free(times);
    return pt_cli_finish(st);
}
