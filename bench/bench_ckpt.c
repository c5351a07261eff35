/* `pipetrain bench ckpt`: checkpoint compression ratio and speed on a real model's weights and
 * AdamW state (after a few real training steps, or N(0, 0.02)-style tensors with --synthetic).
 *
 *  codec:  plain zstd vs byte-grouped zstd vs the plane coder (exponent plane zstd, incompressible
 *          planes raw), fp32 and bf16 views, 1 and 2 threads: ratio per tensor kind, encode and
 *          decode MB/s of raw bytes (in memory, every tensor decoded and compared bit for bit)
 *  save:   the real saver, a first save and the next one (steady state): the stall (staging copy)
 *          and the background compress + write + fsync + commit, MB/s of raw bytes end to end and
 *          per CPU-second; load: pt_ckpt_load_ex into the model, and the reader at 1 and 2 threads
 *  step:   a training step alone vs a training step while the previous save is being written
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "pipetrain/backend.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"
#include "pipetrain/runtime.h"
#include "pipetrain/safetensors.h"
#include "pipetrain/timeutil.h"
#include "pipetrain/train_loop.h"

typedef struct bench_state {
    int n[PT_CKPT_KIND_COUNT];
    pt_ckpt_src *src[PT_CKPT_KIND_COUNT]; /* fp32 views, borrowed from the model / optimizer */
    pt_ckpt_src *src16[PT_CKPT_KIND_COUNT];
    uint16_t *bf16[PT_CKPT_KIND_COUNT];   /* owned bf16 copies */
    uint64_t raw[PT_CKPT_KIND_COUNT];     /* fp32 bytes per kind */
} bench_state;

static int json_out;

static double now_s(void)
{
    return (double)pt_now_ns() * 1e-9;
}

/* CPU seconds of the whole process: on a shared machine, MB per CPU-second is the figure that
 * does not depend on what else runs. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill_normal(float *x, size_t n, double sigma, int square, uint64_t *rng)
{
    for (size_t i = 0; i < n; i += 2) {
        uint64_t a, b;
        *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17, a = *rng;
        *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17, b = *rng;
        double u1 = ((a >> 11) + 1.0) / 9007199254740993.0, u2 = (b >> 11) / 9007199254740992.0;
        double r = sqrt(-2 * log(u1));
        double z0 = sigma * r * cos(6.283185307179586 * u2), z1 = sigma * r * sin(6.283185307179586 * u2);
        x[i] = (float)(square ? z0 * z0 : z0);
        if (i + 1 < n)
            x[i + 1] = (float)(square ? z1 * z1 : z1);
    }
}

static pt_status collect(pt_model *m, pt_optim *o, bench_state *b)
{
    int nt = pt_model_n_tensors(m);
    float *base[PT_CKPT_KIND_COUNT] = { pt_model_params(m), pt_optim_m(o), pt_optim_v(o) };
    for (int k = 0; k < PT_CKPT_KIND_COUNT; k++) {
        b->src[k] = calloc((size_t)nt, sizeof(pt_ckpt_src));
        b->src16[k] = calloc((size_t)nt, sizeof(pt_ckpt_src));
        b->bf16[k] = malloc(pt_model_n_params(m) * sizeof(uint16_t));
        if (!b->src[k] || !b->src16[k] || !b->bf16[k])
            return pt_fail(PT_ENOMEM, "bench ckpt: out of memory");
        for (int t = 0; t < nt; t++) {
            const pt_param *p = pt_model_tensor(m, t);
            pt_ckpt_src s = { .name = p->name, .kind = (pt_ckpt_kind)k, .dtype = PT_CKPT_F32, .ndim = p->ndim,
                              .data = base[k] + p->offset };
            for (int d = 0; d < p->ndim; d++)
                s.shape[d] = p->shape[d];
            b->src[k][t] = s;
            uint16_t *h = b->bf16[k] + p->offset;
            for (size_t i = 0; i < p->numel; i++)
                h[i] = pt_f32_to_bf16(base[k][p->offset + i]);
            s.dtype = PT_CKPT_BF16;
            s.data = h;
            b->src16[k][t] = s;
            b->raw[k] += p->numel * sizeof(float);
        }
        b->n[k] = nt;
    }
    return PT_OK;
}

static void free_state(bench_state *b)
{
    for (int k = 0; k < PT_CKPT_KIND_COUNT; k++) {
        free(b->src[k]);
        free(b->src16[k]);
        free(b->bf16[k]);
    }
}

/* planes: what checkpoints use (expsplit or bytes per tensor, raw planes where zstd cannot shrink them) */
static const char *const method_names[3] = { "zstd", "bytegroup", "planes" };

/* One codec configuration over every tensor of every kind. */
static pt_status bench_codec(bench_state *b, int bf16, int method, int threads, int level)
{
    pt_ckpt_codec_opts o = pt_ckpt_codec_default(level, threads);
    o.transform = method == 0 ? PT_CKPT_XFORM_NONE : (method == 1 ? PT_CKPT_XFORM_BYTES : PT_CKPT_XFORM_EXPSPLIT);
    o.raw_if_no_gain = method == 2;
    o.choose_transform = method == 2;
    o.fast_planes = method == 2;
    pt_ckpt_codec *c;
    PT_CHECK(pt_ckpt_codec_create(&o, &c));
    pt_status st = PT_OK;
    double enc_s = 0, dec_s = 0, enc_cpu = 0, dec_cpu = 0, ratio[PT_CKPT_KIND_COUNT];
    uint64_t raw_all = 0, stored_all = 0;
    uint8_t *arena = NULL, *back = NULL;
    for (int k = 0; k < PT_CKPT_KIND_COUNT && st == PT_OK; k++) {
        int n = b->n[k];
        const pt_ckpt_src *src = bf16 ? b->src16[k] : b->src[k];
        size_t total = 0, raw = 0;
        size_t *cap = calloc((size_t)n, sizeof *cap), *len = calloc((size_t)n, sizeof *len);
        uint8_t **dst = calloc((size_t)n, sizeof *dst);
        const uint8_t **in = calloc((size_t)n, sizeof *in);
        void **out = calloc((size_t)n, sizeof *out);
        pt_ckpt_entry *e = calloc((size_t)n, sizeof *e);
        const pt_ckpt_entry **ep = calloc((size_t)n, sizeof *ep);
        if (!cap || !len || !dst || !in || !out || !e || !ep) {
            st = pt_fail(PT_ENOMEM, "bench ckpt: out of memory");
            goto next;
        }
        for (int i = 0; i < n; i++) {
            uint64_t numel = 1;
            for (int d = 0; d < src[i].ndim; d++)
                numel *= (uint64_t)src[i].shape[d];
            cap[i] = pt_ckpt_encode_bound(src[i].dtype, numel, 0);
            total += cap[i];
            raw += numel * pt_ckpt_dtype_size(src[i].dtype);
        }
        free(arena);
        free(back);
        arena = malloc(total);
        back = malloc(raw);
        if (!arena || !back) {
            st = pt_fail(PT_ENOMEM, "bench ckpt: cannot allocate %zu bytes", total + raw);
            goto next;
        }
        /* touched before timing: first-touch page faults cost as much as the coding on this VM */
        memset(arena, 0, total);
        memset(back, 0, raw);
        size_t pos = 0, rpos = 0;
        for (int i = 0; i < n; i++) {
            dst[i] = arena + pos;
            pos += cap[i];
        }
        double t0 = now_s(), c0 = cpu_s();
        PT_TRY(pt_ckpt_encode(c, n, src, dst, cap, e), next);
        enc_s += now_s() - t0;
        enc_cpu += cpu_s() - c0;
        uint64_t stored = 0;
        for (int i = 0; i < n; i++) {
            stored += e[i].stored_bytes;
            ep[i] = &e[i];
            in[i] = dst[i];
            len[i] = (size_t)e[i].stored_bytes;
            out[i] = back + rpos;
            rpos += (size_t)e[i].raw_bytes;
        }
        t0 = now_s();
        c0 = cpu_s();
        st = pt_ckpt_decode(c, n, ep, in, len, out);
        dec_s += now_s() - t0;
        dec_cpu += cpu_s() - c0;
        for (int i = 0; i < n && st == PT_OK; i++)
            if (memcmp(out[i], src[i].data, (size_t)e[i].raw_bytes) != 0)
                st = pt_fail(PT_EINTERNAL, "bench ckpt: %s did not round-trip (%s, %s)", src[i].name,
                             method_names[method], bf16 ? "bf16" : "f32");
        ratio[k] = (double)raw / (double)stored;
        raw_all += raw;
        stored_all += stored;
    next:
        for (int i = 0; e && i < n; i++)
            pt_ckpt_entry_clear(&e[i]);
        free(cap);
        free(len);
        free(dst);
        free(in);
        free(out);
        free(e);
        free(ep);
    }
    free(arena);
    free(back);
    pt_ckpt_codec_destroy(c);
    PT_CHECK(st);
    double mb = (double)raw_all / 1e6;
    if (json_out)
        printf("{\"bench\":\"ckpt\",\"test\":\"codec\",\"view\":\"%s\",\"method\":\"%s\",\"threads\":%d,\"level\":%d,"
               "\"raw_bytes\":%llu,\"stored_bytes\":%llu,\"ratio\":%.4f,\"ratio_param\":%.4f,\"ratio_adam_m\":%.4f,"
               "\"ratio_adam_v\":%.4f,\"encode_MBps\":%.1f,\"decode_MBps\":%.1f,\"encode_MB_per_cpu_s\":%.1f,"
               "\"decode_MB_per_cpu_s\":%.1f}\n",
               bf16 ? "bf16" : "f32", method_names[method], threads, level, (unsigned long long)raw_all,
               (unsigned long long)stored_all, (double)raw_all / (double)stored_all, ratio[0], ratio[1], ratio[2],
               mb / enc_s, mb / dec_s, mb / enc_cpu, mb / dec_cpu);
    else
        printf("codec %-4s %-9s %d thr: ratio %.4f (param %.4f, adam_m %.4f, adam_v %.4f)  encode %6.0f MB/s (%6.0f per "
               "CPU-s)  decode %6.0f MB/s (%6.0f per CPU-s)\n",
               bf16 ? "bf16" : "f32", method_names[method], threads, (double)raw_all / (double)stored_all, ratio[0],
               ratio[1], ratio[2], mb / enc_s, mb / enc_cpu, mb / dec_s, mb / dec_cpu);
    fflush(stdout);
    return PT_OK;
}

/* One save through the saver: wall seconds from pt_ckpt_save to the end of pt_ckpt_saver_wait,
 * and the process's CPU seconds over the same span (nothing else runs in the process then). */
static pt_status timed_save(pt_ckpt_saver *sv, pt_model *m, pt_optim *o, int64_t step, double *wall_s, double *cpu_used,
                            pt_ckpt_save_info *info)
{
    pt_train_state ts = { .step = step, .data_step = step, .seed = 1, .run_json = "{\"bench\":\"ckpt\"}" };
    double t0 = now_s(), c0 = cpu_s();
    pt_status st = pt_ckpt_save(sv, NULL, &m, &o, 1, &ts);
    if (st == PT_OK)
        st = pt_ckpt_saver_wait(sv);
    *wall_s = now_s() - t0;
    *cpu_used = cpu_s() - c0;
    pt_ckpt_saver_info(sv, info);
    return st;
}

/* The real saver and loaders, on disk under dir: a first save (fresh staging and write buffers
 * and a new shard file: page faults), then with the same saver (keep_last 1) a second one and a
 * third, which is what every later save of a training run costs (the pruned first checkpoint's
 * shard is overwritten); loading into the model, and the reader alone into touched memory. */
static pt_status bench_save_load(pt_model *m, pt_optim *o, const char *dir, int threads, int level)
{
    pt_ckpt_saver *sv;
    PT_CHECK(pt_ckpt_saver_create(dir, 1, level, threads, &sv));
    static int64_t step = 1000;
    double first_s, first_cpu, save_s, save_cpu;
    pt_ckpt_save_info first, info;
    pt_status st = timed_save(sv, m, o, ++step, &first_s, &first_cpu, &first);
    if (st == PT_OK)
        st = timed_save(sv, m, o, ++step, &save_s, &save_cpu, &info);
    if (st == PT_OK)
        st = timed_save(sv, m, o, ++step, &save_s, &save_cpu, &info);
    pt_ckpt_saver_destroy(sv);
    PT_CHECK(st);
    double mb = (double)info.raw_bytes / 1e6;
    /* load into the model (2 decoding threads) */
    pt_train_state ls;
    pt_ckpt_load_info li;
    double t0 = now_s(), c0 = cpu_s();
    PT_CHECK(pt_ckpt_load_ex(dir, &m, &o, 1, &ls, NULL, NULL, &li));
    double load_s = now_s() - t0, load_cpu = cpu_s() - c0;
    free((char *)ls.run_json);
    /* the reader alone, into host memory, at `threads` */
    pt_ckpt_reader *r;
    PT_CHECK(pt_ckpt_reader_open(info.step_dir, threads, &r));
    const pt_ckpt_manifest *man = pt_ckpt_reader_manifest(r);
    const pt_ckpt_entry **e = calloc((size_t)man->n_entries, sizeof *e);
    void **dst = calloc((size_t)man->n_entries, sizeof *dst);
    uint8_t *host = malloc((size_t)info.raw_bytes);
    double read_s = 0, read_cpu = 0;
    if (!e || !dst || !host) {
        st = pt_fail(PT_ENOMEM, "bench ckpt: out of memory");
    } else {
        memset(host, 0, (size_t)info.raw_bytes); /* fresh pages cost as much as the decoding here */
        size_t pos = 0;
        for (int i = 0; i < man->n_entries; i++) {
            e[i] = &man->entries[i];
            dst[i] = host + pos;
            pos += (size_t)e[i]->raw_bytes;
        }
        t0 = now_s();
        c0 = cpu_s();
        st = pt_ckpt_reader_read(r, man->n_entries, e, dst);
        read_s = now_s() - t0;
        read_cpu = cpu_s() - c0;
    }
    free(e);
    free(dst);
    free(host);
    pt_ckpt_reader_close(r);
    PT_CHECK(st);
    if (json_out)
        printf("{\"bench\":\"ckpt\",\"test\":\"save_load\",\"dir\":\"%s\",\"threads\":%d,\"level\":%d,"
               "\"raw_bytes\":%llu,\"stored_bytes\":%llu,\"ratio\":%.4f,"
               "\"first_save_s\":%.3f,\"first_save_MBps\":%.1f,\"first_stall_s\":%.4f,"
               "\"save_s\":%.3f,\"save_MBps\":%.1f,\"save_MB_per_cpu_s\":%.1f,\"stall_s\":%.4f,\"write_s\":%.3f,"
               "\"encode_thread_s\":%.3f,\"io_thread_s\":%.3f,"
               "\"load_model_s\":%.3f,\"load_model_MBps\":%.1f,\"load_model_MB_per_cpu_s\":%.1f,"
               "\"read_threads\":%d,\"read_MBps\":%.1f,\"read_MB_per_cpu_s\":%.1f}\n",
               dir, threads, level, (unsigned long long)info.raw_bytes, (unsigned long long)info.stored_bytes,
               (double)info.raw_bytes / (double)info.stored_bytes, first_s, mb / first_s, first.stage_s, save_s,
               mb / save_s, mb / save_cpu, info.stage_s, info.write_s, info.encode_s, info.io_s, load_s, mb / load_s,
               mb / load_cpu, threads, mb / read_s, mb / read_cpu);
    else
        printf("save  %d thr: %.0f MB raw -> %.0f MB (ratio %.4f): first save %.2f s (%.0f MB/s; stall %.3f s); "
               "third save %.2f s = %.0f MB/s end to end, %.0f MB per CPU-s (stall %.3f s, background %.2f s: encode "
               "%.2f + write %.2f thread-s);  load into model %.0f MB/s (2 thr, %.0f MB per CPU-s), reader %.0f MB/s "
               "(%d thr, %.0f MB per CPU-s)\n",
               threads, mb, (double)info.stored_bytes / 1e6, (double)info.raw_bytes / (double)info.stored_bytes,
               first_s, mb / first_s, first.stage_s, save_s, mb / save_s, mb / save_cpu, info.stage_s, info.write_s,
               info.encode_s, info.io_s, mb / load_s, mb / load_cpu, mb / read_s, threads, mb / read_cpu);
    fflush(stdout);
    return PT_OK;
}

int pt_bench_ckpt(int argc, char **argv)
{
    const char *model = "gpt2", *parent = "/tmp";
    int steps = 2, synthetic = 0, level = 1, B = 1, T = 32, max_threads = 2, skip_codec = 0;
    pt_opt opts[] = {
        { "json", PT_OPT_FLAG, &json_out, NULL, "print results as JSON lines", 0 },
        { "model", PT_OPT_STRING, &model, "NAME|FILE", "model preset or config", 0 },
        { "steps", PT_OPT_INT, &steps, "N", "real training steps before measuring (AdamW state from them)", 0 },
        { "synthetic", PT_OPT_FLAG, &synthetic, NULL,
          "no training: weights N(0, 0.02), adam_m N(0, 1e-3), adam_v N(0, 1e-3)^2", 0 },
        { "micro-batch-size", PT_OPT_INT, &B, "B", "sequences per training step", 0 },
        { "seq-len", PT_OPT_INT, &T, "T", "tokens per sequence", 0 },
        { "zstd-level", PT_OPT_INT, &level, "N", "zstd level for every method", 0 },
        { "threads", PT_OPT_INT, &max_threads, "N", "measure 1..N threads", 0 },
        { "dir", PT_OPT_STRING, &parent, "DIR", "a fresh directory for the checkpoints is made (and removed) in DIR", 0 },
        { "no-codec", PT_OPT_FLAG, &skip_codec, NULL, "skip the in-memory codec comparison", 0 },
    };
    pt_cmd_spec spec = { "pipetrain bench ckpt [--json] [options]",
                         "Checkpoint compression ratio and speed on a model's weights and AdamW state: plain zstd,\n"
                         "byte-grouped zstd and the plane coder, fp32 and bf16 views, 1..N threads; the real saver\n"
                         "(stall, background write) and loaders; a training step with and without a save in flight.",
                         opts, (int)(sizeof opts / sizeof opts[0]), NULL };
    int done = 0;
    pt_status st = pt_args_parse(&spec, argc, argv, NULL, 0, NULL, &done);
    if (st != PT_OK || done)
        return pt_cli_finish(st);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/pt_bench_ckpt_XXXXXX", parent);
    if (!mkdtemp(dir))
        return pt_cli_finish(pt_fail(PT_EIO, "cannot create a directory in %s; pass --dir DIR", parent));

    pt_train_job job;
    int trained = 0; /* job set up: m, o and steps are the runtime's */
    memset(&job, 0, sizeof job);
    pt_model *m = NULL;
    pt_optim *o = NULL;
    const pt_backend *be = NULL;
    pt_stream *stream = NULL;
    bench_state b;
    memset(&b, 0, sizeof b);
    double step_s = 0;
    if (synthetic) {
        pt_model_config cfg;
        PT_TRY(pt_model_config_load(model, &cfg), out);
        PT_TRY(pt_backend_get("cpu", &be), out);
        PT_TRY(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 0 }, &stream), out);
        pt_model_opts mo = { .micro_batch = 1, .seq_len = 1, .n_slots = 1, .recompute = 0 };
        PT_TRY(pt_model_create(&cfg, 0, pt_model_n_layers(&cfg) - 1, &mo, be, stream, &m), out);
        pt_adamw_cfg ac = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                            .grad_clip = 1.0f };
        PT_TRY(pt_optim_create(m, &ac, &o), out);
        uint64_t rng = 0x853c49e6748fea9bULL;
        size_t n = pt_model_n_params(m);
        fill_normal(pt_model_params(m), n, 0.02, 0, &rng);
        fill_normal(pt_optim_m(o), n, 1e-3, 0, &rng);
        fill_normal(pt_optim_v(o), n, 1e-3, 1, &rng);
    } else {
        /* real steps of the one-process run `pipetrain train --stages 1` makes (runtime.h) */
        pt_runtime_train_args ra;
        memset(&ra, 0, sizeof ra);
        pt_train_cfg_defaults(&ra.train);
        ra.train.model = model;
        ra.train.steps = steps + 2;
        ra.train.micro_batch_size = B;
        ra.train.seq_len = T;
        ra.train.eval_batches = 0;
        ra.train.run_dir = NULL;
        ra.train.warmup = 1;
        ra.stages = 1;
        trained = 1;
        PT_TRY(pt_train_job_setup(&job, &ra), out);
        m = pt_runtime_chunk_model(job.rt, 0);
        o = pt_runtime_chunk_optim(job.rt, 0);
        for (int s = 0; s < steps; s++) {
            pt_runtime_step_info ss;
            double t0 = now_s();
            PT_TRY(pt_runtime_step(job.rt, job.data, s, 1e-4f, &ss), out);
            step_s = now_s() - t0;
            if (!json_out)
                printf("train step %d: loss %.4f, %.2f s\n", s + 1, ss.loss, step_s);
        }
    }
    if (strcmp(pt_model_backend(m)->name, "cpu") != 0) {
        st = pt_fail(PT_ENOTSUP, "bench ckpt reads tensors in place and needs the cpu backend");
        goto out;
    }
    PT_TRY(collect(m, o, &b), out);
    if (json_out)
        printf("{\"bench\":\"ckpt\",\"test\":\"source\",\"model\":\"%s\",\"source\":\"%s\",\"steps\":%d,"
               "\"params\":%zu,\"raw_bytes\":%llu}\n",
               model, synthetic ? "synthetic" : "trained", synthetic ? 0 : steps, pt_model_n_params(m),
               (unsigned long long)(b.raw[0] + b.raw[1] + b.raw[2]));
    else
        printf("%s: %zu parameters, %s; %.0f MB of fp32 weights + AdamW moments\n", model, pt_model_n_params(m),
               synthetic ? "synthetic N(0, 0.02) weights" : "weights and AdamW state after real steps",
               (double)(b.raw[0] + b.raw[1] + b.raw[2]) / 1e6);
    if (!skip_codec)
        for (int bf16 = 0; bf16 < 2; bf16++)
            for (int method = 0; method < 3; method++)
                for (int t = 1; t <= max_threads; t++)
                    PT_TRY(bench_codec(&b, bf16, method, t, level), out);
    for (int t = 1; t <= max_threads; t++)
        PT_TRY(bench_save_load(m, o, dir, t, level), out);

    if (trained) {
        /* a step with a save being written in the background, against one without */
        /* as the trainers do: the staging buffer reserved (pages written) at start-up, so this is
         * the stall of a run's first save too */
        pt_ckpt_saver *sv;
        PT_TRY(pt_ckpt_saver_create(dir, 1, level, max_threads, &sv), out);
        st = pt_ckpt_saver_reserve(sv, &m, &o, 1);
        double t0 = now_s();
        if (st == PT_OK)
            st = pt_runtime_step(job.rt, job.data, steps, 1e-4f, NULL);
        double plain_s = now_s() - t0;
        pt_train_state ts = { .step = 1, .data_step = 1, .seed = 1, .run_json = "{}" };
        t0 = now_s();
        if (st == PT_OK)
            st = pt_ckpt_save(sv, NULL, &m, &o, 1, &ts);
        double stall_s = now_s() - t0;
        t0 = now_s();
        if (st == PT_OK)
            st = pt_runtime_step(job.rt, job.data, steps + 1, 1e-4f, NULL);
        double during_s = now_s() - t0;
        pt_ckpt_save_info info;
        if (st == PT_OK)
            st = pt_ckpt_saver_wait(sv);
        pt_ckpt_saver_info(sv, &info);
        pt_ckpt_saver_destroy(sv);
        if (st != PT_OK)
            goto out;
        if (json_out)
            printf("{\"bench\":\"ckpt\",\"test\":\"step_stall\",\"step_s\":%.3f,\"stall_s\":%.4f,\"stall_frac\":%.4f,"
                   "\"step_during_save_s\":%.3f,\"write_s\":%.3f}\n",
                   plain_s, stall_s, stall_s / plain_s, during_s, info.write_s);
        else
            printf("step: %.2f s alone; save stalls %.3f s (%.1f%% of a step); the next step took %.2f s while the "
                   "save was written (%.2f s in the background)\n",
                   plain_s, stall_s, 100 * stall_s / plain_s, during_s, info.write_s);
    }
out:
    free_state(&b);
    if (trained) {
        pt_train_job_close(&job);
    } else {
        pt_optim_destroy(o);
        pt_model_destroy(m);
        if (be && stream)
            be->stream_destroy(stream);
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "pipetrain: could not remove %s\n", dir);
    return pt_cli_finish(st);
}
