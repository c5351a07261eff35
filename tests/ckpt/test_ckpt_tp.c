/* ckpt.tp: checkpoints of tensor-parallel chunks (pt_model_opts.tp), resharded across T, P and D
 * bit for bit (docs/checkpoints.md, "Tensor parallelism").
 *  - gpt2-tiny and llama-tiny (n_kv_head 2: at T = 4 each kv head is held by 2 ranks) saved with
 *    T in {1, 2, 4} (P = 2 stages; every TP rank's chunks in one pt_ckpt_save, no comm), loaded
 *    into every T in {1, 2, 4} with P = 1 or 3: every weight and moment equals the value of its
 *    whole-tensor index, bit for bit; T > 1 writes format 4 (column slices are boxes), T = 1
 *    format 2; the replicated tensors and kv heads stored once; T = 2's save and the loads into
 *    the saved T go through the backend's copies as for device memory (the CPU backend renamed)
 *  - the weights of pt_model_init_weights saved with T = 4 load into T = 1 and T = 2 as the
 *    models' own initialisation of those layouts (the checkpoint's slicing is the model's)
 *  - ZeRO-1 with TP: 8 ranks (llama-tiny, T = 4 x D = 2 replicas, rank = d * T + t) save through
 *    comm, each optimizer over its slice of its chunk, cut inside a column-sliced tensor (so that
 *    pieces are parts of boxes: zero_range); replica 1 optim_only. Loaded into
 *    T = 1 whole optimizers (P = 2), T = 2 with D = 3 slices, T = 4 whole: bit for bit. A second
 *    save without ZeRO (every rank saves everything): replica 1's identical boxes are dropped
 *  - a checkpoint of TP rank 0 of 2 only: loads into that rank's layout, but not into T = 1
 *    (PT_EFORMAT naming wte.weight, param, the missing elements); `pipetrain ckpt verify` exits 1
 *  - boxes written with pt_ckpt_write: a missing column range and overlapping boxes named by
 *    pt_ckpt_manifest_cover in rows x columns; a part of a box (values range) round-trips
 * Usage: test_ckpt_tp [PIPETRAIN]   (starts its own ranks with pt_launch: re-runs itself). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipetrain/backend.h"
#include "pipetrain/ckpt.h"
#include "pipetrain/comm.h"
#include "pipetrain/model.h"
#include "pipetrain/optim.h"

#include "ckpt_test.h"

static const pt_adamw_cfg adam = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                                   .grad_clip = 1.0f };
static const pt_backend *be;
static pt_stream *stream;
/* The CPU backend under another name: the saver and the loader take its memory for device memory
 * (copies through memcpy_d2h / memcpy_h2d, slices assembled in host buffers first). */
static pt_backend as_device;

/* The value of whole-tensor element g of `name`: kind 0 weights, 1 and 2 the moments. */
static float value_of(const char *name, int kind, size_t g)
{
    float u = (float)(ckpt_test_hash(name, (uint64_t)(kind + 23), g) >> 40) / 16777216.0f - 0.5f;
    return kind == 2 ? u * u * 1e-4f : u * 0.05f;
}

/* The whole-tensor index of p's local element j, from the slice fields alone (the test's own
 * mapping, not the checkpoint code's). */
static size_t global_index(const pt_param *p, size_t j)
{
    if (p->tp_dim < 0)
        return j;
    size_t K = p->ndim > 1 ? (size_t)p->gshape[1] : 1, kl = p->ndim > 1 ? (size_t)p->shape[1] : 1;
    size_t r = j / kl, c = j % kl;
    for (int i = 0; i < p->tp_nseg; i++) {
        size_t len = (size_t)(p->tp_hi[i] - p->tp_lo[i]);
        if (p->tp_dim == 0 && r < len)
            return ((size_t)p->tp_lo[i] + r) * K + c;
        if (p->tp_dim == 1 && c < len)
            return r * K + (size_t)p->tp_lo[i] + c;
        if (p->tp_dim == 0)
            r -= len;
        else
            c -= len;
    }
    fprintf(stderr, "%s: local element %zu is in no segment\n", p->name, j);
    exit(1);
}

static pt_status no_collective(void *ctx, float *x, size_t n, const char *what)
{
    (void)ctx;
    (void)x;
    (void)n;
    return pt_fail(PT_EINVAL, "ckpt.tp: %s: this test runs no step", what);
}

/* Replica d's slice of a chunk's flat parameters under ZeRO-1 over D replicas: pt_comm_segment,
 * except that each cut between slices is moved inside a column-sliced tensor the chunk holds
 * (llama's attn.proj / mlp.down: boxes), a few values past the middle of a row, so that the slices
 * are parts of boxes. */
static void zero_range(const pt_model *m, int D, int d, size_t *lo, size_t *hi)
{
    size_t n = pt_model_n_params(m), cut[4] = { 0 };
    int k = 0;
    for (int t = 0; t < pt_model_n_tensors(m) && k < D - 1; t++) {
        const pt_param *p = pt_model_tensor(m, t);
        size_t seg_lo, seg_hi;
        pt_comm_segment(n, D, k + 1, &seg_lo, &seg_hi);
        if (p->tp_dim == 1 && p->offset + p->numel > seg_lo) /* the first column tensor past cut k */
            cut[k++] = p->offset + p->numel / 2 + 3;
    }
    for (; k < D - 1; k++) { /* no column tensor there: the plain segment */
        size_t end;
        pt_comm_segment(n, D, k + 1, &cut[k], &end);
    }
    *lo = d == 0 ? 0 : cut[d - 1];
    *hi = d == D - 1 ? n : cut[d];
}

/* One layout of a model: P stages x T tensor-parallel ranks, chunk (p, t) at index p * T + t; each
 * with an optimizer over replica d's segment of D (D 0: whole). layout_make_rank: TP rank t's
 * chunks only (P = 1: one chunk at index 0). */
typedef struct layout {
    int T, P, n;
    pt_model *m[16];
    pt_optim *o[16];
} layout;

static void layout_make_rank(layout *l, const pt_model_config *cfg, int T, int P, int D, int d, int only_t)
{
    int L = pt_model_n_layers(cfg) - 1, nb = cfg->n_layer;
    l->T = only_t >= 0 ? 1 : T;
    l->P = P;
    l->n = l->T * P;
    for (int p = 0; p < P; p++) {
        /* P = 1: everything; 2: embedding + half the blocks | the rest + head; 3: thirds */
        int first = p == 0 ? 0 : 1 + nb * p / P, last = p == P - 1 ? L : nb * (p + 1) / P;
        for (int t = only_t >= 0 ? only_t : 0; t < (only_t >= 0 ? only_t + 1 : T); t++) {
            pt_model_opts mo = { .micro_batch = 1, .seq_len = 8, .n_slots = 1, .recompute = 0 };
            mo.tp.size = T;
            mo.tp.rank = t;
            mo.tp.allreduce = mo.tp.reduce_scatter = mo.tp.allgather = no_collective;
            int i = p * l->T + (only_t >= 0 ? 0 : t);
            REQUIRE(pt_model_create(cfg, first, last, &mo, be, stream, &l->m[i]));
            if (D > 0) {
                size_t lo, hi;
                zero_range(l->m[i], D, d, &lo, &hi);
                REQUIRE(pt_optim_create_range(l->m[i], &adam, lo, hi, &l->o[i]));
            } else {
                REQUIRE(pt_optim_create(l->m[i], &adam, &l->o[i]));
            }
        }
    }
}

static void layout_make(layout *l, const pt_model_config *cfg, int T, int P, int D, int d)
{
    layout_make_rank(l, cfg, T, P, D, d, -1);
}

static void layout_drop(layout *l)
{
    for (int i = 0; i < l->n; i++) {
        pt_optim_destroy(l->o[i]);
        pt_model_destroy(l->m[i]);
    }
    l->n = 0;
}

/* Weights (kinds bit 0) and the moments over each optimizer's range (bit 1) of every chunk set to
 * value_of their whole-tensor index, or zeroed (zero != 0); optimizers at step 10. */
static void layout_fill(layout *l, int kinds, int zero)
{
    for (int i = 0; i < l->n; i++) {
        size_t lo, hi;
        pt_optim_range(l->o[i], &lo, &hi);
        float *w = pt_model_params(l->m[i]), *mo[2] = { pt_optim_m(l->o[i]), pt_optim_v(l->o[i]) };
        for (int t = 0; t < pt_model_n_tensors(l->m[i]); t++) {
            const pt_param *p = pt_model_tensor(l->m[i], t);
            for (size_t j = 0; j < p->numel; j++) {
                size_t x = p->offset + j, g = global_index(p, j);
                if (kinds & 1)
                    w[x] = zero ? 0.0f : value_of(p->name, 0, g);
                for (int k = 0; (kinds & 2) && k < 2 && x >= lo && x < hi; k++)
                    mo[k][x - lo] = zero ? 0.0f : value_of(p->name, k + 1, g);
            }
        }
        pt_optim_set_steps_done(l->o[i], zero ? 0 : 10);
    }
}

/* 1 when every chunk's weights (and, moments != 0, the moments over its range) hold value_of their
 * whole-tensor index bit for bit and the optimizers are at `step`; else 0, printing the first miss. */
static int layout_matches(layout *l, int moments, int64_t step, const char *what)
{
    for (int i = 0; i < l->n; i++) {
        size_t lo, hi;
        pt_optim_range(l->o[i], &lo, &hi);
        const float *w = pt_model_params(l->m[i]), *mo[2] = { pt_optim_m(l->o[i]), pt_optim_v(l->o[i]) };
        for (int t = 0; t < pt_model_n_tensors(l->m[i]); t++) {
            const pt_param *p = pt_model_tensor(l->m[i], t);
            for (size_t j = 0; j < p->numel; j++) {
                size_t x = p->offset + j, g = global_index(p, j);
                for (int k = 0; k < (moments ? 3 : 1); k++) {
                    if (k > 0 && (x < lo || x >= hi))
                        continue;
                    float got = k ? mo[k - 1][x - lo] : w[x], want = value_of(p->name, k, g);
                    if (memcmp(&got, &want, 4) != 0) {
                        fprintf(stderr, "%s: chunk %d (TP rank %d of %d) %s kind %d local [%zu] whole [%zu]: %a, "
                                        "want %a\n",
                                what, i, i % l->T, l->T, p->name, k, j, g, got, want);
                        return 0;
                    }
                }
            }
        }
        if (moments && pt_optim_steps_done(l->o[i]) != step) {
            fprintf(stderr, "%s: chunk %d optimizer at step %lld, want %lld\n", what, i,
                    (long long)pt_optim_steps_done(l->o[i]), (long long)step);
            return 0;
        }
    }
    return 1;
}

/* Loads dir into the layout's chunks (moments too when moments != 0); device != 0: through
 * as_device. */
static pt_status layout_load_on(const char *dir, layout *l, int moments, int device)
{
    pt_train_state ts;
    pt_status st = pt_ckpt_load_ex(dir, l->m, moments ? l->o : NULL, l->n, &ts, device ? &as_device : NULL,
                                   device ? stream : NULL, NULL);
    if (st == PT_OK)
        free((char *)ts.run_json);
    return st;
}

static pt_status layout_load(const char *dir, layout *l, int moments)
{
    return layout_load_on(dir, l, moments, 0);
}

/* Saves the chunks models[0..n) (optimizers optims, may be NULL) in this process as step `step`;
 * device != 0: through as_device. */
static void save_local_on(const char *root, pt_model *const *models, pt_optim *const *optims, int n, int64_t step,
                          int device)
{
    pt_ckpt_saver *sv;
    REQUIRE(pt_ckpt_saver_create(root, 0, 1, 2, &sv));
    if (device)
        pt_ckpt_saver_set_device(sv, &as_device, stream);
    pt_train_state ts = { .step = step, .data_step = step, .seed = 3, .run_json = "{}" };
    REQUIRE(pt_ckpt_save_ex(sv, NULL, models, optims, n, &ts, NULL));
    REQUIRE(pt_ckpt_saver_wait(sv));
    pt_ckpt_saver_destroy(sv);
}

static void save_local(const char *root, pt_model *const *models, pt_optim *const *optims, int n, int64_t step)
{
    save_local_on(root, models, optims, n, step, 0);
}

static void run(const char *cmd)
{
    if (system(cmd) != 0) {
        fprintf(stderr, "command failed: %s\n", cmd);
        failures++;
    }
}

/* How many entries of the manifest are boxes, and whether a name is stored more than once per
 * (kind, element): the replicated tensors must be stored by one TP rank only (parse refuses exact
 * duplicates; a replicated kv head saved twice would be an overlap, which cover finds). */
static void check_manifest(const char *dir, int T, const char *what)
{
    pt_ckpt_manifest *man;
    REQUIRE(pt_ckpt_manifest_read(dir, &man));
    int boxes = 0;
    for (int i = 0; i < man->n_entries; i++) {
        const pt_ckpt_entry *e = &man->entries[i];
        boxes += pt_ckpt_entry_is_box(e);
        char w[700];
        snprintf(w, sizeof w, "%s/manifest.json", dir);
        CHECK(pt_ckpt_manifest_cover(man, e->name, e->kind, 0, pt_ckpt_entry_numel(e), w) == PT_OK, "%s: %s",
              what, pt_last_error());
    }
    int want_version = T > 1 ? PT_CKPT_FORMAT_VERSION : PT_CKPT_FORMAT_WHOLE;
    CHECK(man->version == want_version && (boxes > 0) == (T > 1), "%s: format %d with %d boxes, want format %d",
          what, man->version, boxes, want_version);
    pt_ckpt_manifest_destroy(man);
}

/* Every save T x every load T (P 2 -> 1 or 3), one model. */
static void reshard_matrix(const char *preset)
{
    pt_model_config cfg;
    REQUIRE(pt_model_config_load(preset, &cfg));
    const int Ts[3] = { 1, 2, 4 };
    for (int si = 0; si < 3; si++) {
        char root[] = "/tmp/pt_ckpt_tp_XXXXXX";
        if (!mkdtemp(root))
            exit(1);
        layout s;
        layout_make(&s, &cfg, Ts[si], 2, 0, 0);
        layout_fill(&s, 3, 0);
        save_local_on(root, s.m, s.o, s.n, 10, si == 1); /* T = 2 through the device copies */
        layout_drop(&s);
        char dir[600], what[160];
        snprintf(dir, sizeof dir, "%s/step_000010", root);
        snprintf(what, sizeof what, "%s saved with T=%d", preset, Ts[si]);
        check_manifest(dir, Ts[si], what);
        for (int li = 0; li < 3; li++) {
            layout l;
            int P = li == 1 ? 3 : 1;
            layout_make(&l, &cfg, Ts[li], P, 0, 0);
            layout_fill(&l, 3, 1);
            int device = li == si; /* the diagonal through the device copies */
            snprintf(what, sizeof what, "%s T=%d P=2 -> T=%d P=%d%s", preset, Ts[si], Ts[li], P,
                     device ? " (as device memory)" : "");
            pt_status st = layout_load_on(dir, &l, 1, device);
            CHECK(st == PT_OK, "%s: %s", what, pt_last_error());
            if (st == PT_OK && !layout_matches(&l, 1, 10, what))
                failures++;
            layout_drop(&l);
        }
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf %s", root);
        run(cmd);
    }
}

/* pt_model_init_weights of T = 4 saved, loaded into T = 1 and T = 2: equal to those layouts' own
 * initialisation (the weights only). */
static void init_matches_model(const char *preset)
{
    pt_model_config cfg;
    REQUIRE(pt_model_config_load(preset, &cfg));
    char root[] = "/tmp/pt_ckpt_tp_XXXXXX";
    if (!mkdtemp(root))
        exit(1);
    layout s;
    layout_make(&s, &cfg, 4, 1, 0, 0);
    for (int i = 0; i < s.n; i++)
        REQUIRE(pt_model_init_weights(s.m[i], 77));
    save_local(root, s.m, NULL, s.n, 1);
    layout_drop(&s);
    for (int T = 1; T <= 2; T++) {
        layout l, ref;
        layout_make(&l, &cfg, T, 2, 0, 0);
        layout_make(&ref, &cfg, T, 2, 0, 0);
        layout_fill(&l, 1, 1);
        for (int i = 0; i < ref.n; i++)
            REQUIRE(pt_model_init_weights(ref.m[i], 77));
        CHECK(layout_load(root, &l, 0) == PT_OK, "%s init T=4 -> T=%d: %s", preset, T, pt_last_error());
        for (int i = 0; i < l.n; i++) {
            size_t n = pt_model_n_params(l.m[i]);
            const float *a = pt_model_params(l.m[i]), *b = pt_model_params(ref.m[i]);
            size_t j = 0;
            while (j < n && memcmp(&a[j], &b[j], 4) == 0)
                j++;
            CHECK(j == n, "%s init T=4 -> T=%d: chunk %d flat element %zu is %a, the model's own init %a", preset, T, i,
                  j, j < n ? a[j] : 0.0f, j < n ? b[j] : 0.0f);
        }
        layout_drop(&l);
        layout_drop(&ref);
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    run(cmd);
}

/* A checkpoint of TP rank 0 of 2 alone: loads into rank 0's own layout, not into T = 1. */
static void missing_rank(const char *pipetrain)
{
    pt_model_config cfg;
    REQUIRE(pt_model_config_load("gpt2-tiny", &cfg));
    char root[] = "/tmp/pt_ckpt_tp_XXXXXX";
    if (!mkdtemp(root))
        exit(1);
    layout s;
    layout_make(&s, &cfg, 2, 1, 0, 0);
    layout_fill(&s, 3, 0);
    save_local(root, s.m, s.o, 1, 10); /* chunk 0: TP rank 0 only */
    layout_fill(&s, 3, 1);
    pt_train_state ts;
    pt_status st = pt_ckpt_load_ex(root, s.m, s.o, 1, &ts, NULL, NULL, NULL);
    CHECK(st == PT_OK, "rank 0's checkpoint into rank 0: %s", pt_last_error());
    if (st == PT_OK) {
        free((char *)ts.run_json);
        layout one = s;
        one.n = 1;
        if (!layout_matches(&one, 1, 10, "rank 0 -> rank 0"))
            failures++;
    }
    layout_drop(&s);
    layout w;
    layout_make(&w, &cfg, 1, 1, 0, 0);
    st = layout_load(root, &w, 1);
    /* wte.weight (256 x 128) rows [0, 128) are rank 0's: elements [16384, 32768) are missing */
    CHECK(st == PT_EFORMAT && strstr(pt_last_error(), "tensor wte.weight (param): no piece holds elements [16384, 32768) "
                                                      "of its 32768"),
          "rank 0's checkpoint into T=1: status %d: %s", st, pt_last_error());
    layout_drop(&w);
    if (pipetrain) {
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "%s ckpt verify %s > %s/verify.out 2>&1", pipetrain, root, root);
        int rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "ckpt verify of rank 0's checkpoint: exit %d", rc);
        snprintf(cmd, sizeof cmd,
                 "grep -q 'blocks.0.attn.proj.weight (param): no piece holds rows \\[0, 128) x columns \\[64, 128) of "
                 "its 128x128' %s/verify.out",
                 root);
        run(cmd);
        snprintf(cmd, sizeof cmd, "%s ckpt inspect %s > %s/inspect.out 2>&1 && grep -q 'rows 0:128 cols 0:64' "
                                  "%s/inspect.out",
                 pipetrain, root, root, root);
        run(cmd);
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    run(cmd);
}

/* Boxes through pt_ckpt_write: a (16, 8) tensor as columns [0, 4) whole, and columns [4, 8) as the
 * values [5, 40) of its box and the rest missing; then overlapping boxes. */
static void written_boxes(void)
{
    float v[128];
    for (int i = 0; i < 128; i++)
        v[i] = value_of("t", 0, (size_t)i);
    float left[64], right[64];
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 4; c++) {
            left[r * 4 + c] = v[r * 8 + c];
            right[r * 4 + c] = v[r * 8 + 4 + c];
        }
    char root[] = "/tmp/pt_ckpt_tp_XXXXXX";
    if (!mkdtemp(root))
        exit(1);
    pt_ckpt_src src[2] = {
        { "t", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 16, 8 }, left, 0, 0, { 0, 16, 0, 4 } },
        { "t", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 16, 8 }, right + 5, 5, 40, { 0, 16, 4, 8 } },
    };
    pt_ckpt_codec_opts co = pt_ckpt_codec_default(1, 1);
    pt_train_state ts = { .step = 1, .data_step = 1, .seed = 1, .run_json = "{}" };
    REQUIRE(pt_ckpt_write(root, src, 2, &ts, &co, 0));
    char dir[600];
    snprintf(dir, sizeof dir, "%s/step_000001", root);
    pt_ckpt_reader *r;
    REQUIRE(pt_ckpt_reader_open(dir, 1, &r));
    const pt_ckpt_manifest *m = pt_ckpt_reader_manifest(r);
    CHECK(m->version == PT_CKPT_FORMAT_VERSION && m->n_entries == 2, "format %d, %d entries", m->version, m->n_entries);
    for (int i = 0; i < m->n_entries; i++) {
        const pt_ckpt_entry *e = &m->entries[i];
        char where[96];
        pt_ckpt_entry_where(e, where, sizeof where);
        int second = e->box.c0 == 4;
        CHECK(strcmp(where, second ? "rows 0:16 cols 4:8 values 5:40" : "rows 0:16 cols 0:4") == 0, "entry %d is %s",
              i, where);
        float out[64];
        void *dst = out;
        REQUIRE(pt_ckpt_reader_read(r, 1, &e, &dst));
        CHECK(memcmp(out, second ? right + 5 : left, (size_t)e->raw_bytes) == 0, "entry %d read back other values", i);
    }
    pt_status st = pt_ckpt_manifest_cover(m, "t", PT_CKPT_PARAM, 0, 128, "boxes");
    /* columns [4, 8): the box's values [0, 5) are rows 0 (4 values) and row 1's first, [40, 64) rows 10.. */
    CHECK(st == PT_EFORMAT && strstr(pt_last_error(), "boxes: tensor t (param): no piece holds rows [0, 1) x columns "
                                                      "[4, 8) of its 16x8") &&
              strstr(pt_last_error(), "rows [0, 16) x columns [4, 8) values [5, 40) in shard-0.ptz"),
          "missing part of a box: %s", pt_last_error());
    CHECK(pt_ckpt_manifest_cover(m, "t", PT_CKPT_PARAM, 16, 72, "boxes") == PT_OK,
          "elements [16, 72) (rows 2..8) are held: %s", pt_last_error());
    pt_ckpt_reader_close(r);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    run(cmd);

    char root2[] = "/tmp/pt_ckpt_tp_XXXXXX";
    if (!mkdtemp(root2))
        exit(1);
    pt_ckpt_src ov[2] = {
        { "t", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 16, 8 }, v, 0, 0, { 0, 16, 0, 4 } },
        { "t", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 16, 8 }, v, 0, 0, { 8, 16, 2, 6 } },
    };
    REQUIRE(pt_ckpt_write(root2, ov, 2, &ts, &co, 0));
    pt_ckpt_manifest *man;
    snprintf(dir, sizeof dir, "%s/step_000001", root2);
    REQUIRE(pt_ckpt_manifest_read(dir, &man));
    st = pt_ckpt_manifest_cover(man, "t", PT_CKPT_PARAM, 0, 128, "ov");
    CHECK(st == PT_EFORMAT && strstr(pt_last_error(), "pieces rows [0, 16) x columns [0, 4) in shard-0.ptz and rows "
                                                      "[8, 16) x columns [2, 6) in shard-0.ptz overlap in rows [8, 16) "
                                                      "x columns [2, 4)"),
          "overlapping boxes: %s", pt_last_error());
    pt_ckpt_manifest_destroy(man);
    /* a box out of its tensor is refused by the writer */
    pt_ckpt_src out = { "t", PT_CKPT_PARAM, PT_CKPT_F32, 2, { 16, 8 }, v, 0, 0, { 0, 16, 4, 9 } };
    CHECK(pt_ckpt_write(root2, &out, 1, &(pt_train_state){ .step = 2, .run_json = "{}" }, &co, 0) == PT_EINVAL &&
              strstr(pt_last_error(), "not within its 16 x 8"),
          "box out of the tensor: %s", pt_last_error());
    snprintf(cmd, sizeof cmd, "rm -rf %s", root2);
    run(cmd);
}

/* ---- ZeRO-1 with tensor parallelism, through comm ---- */

#define Z_T 4
#define Z_D 2

static int rank_main(const char *root)
{
    pt_comm *comm;
    pt_comm_opts co = { .provider = NULL, .timeout_ms = 60000, .config_hash = 29 };
    REQUIRE(pt_comm_create(&co, &comm));
    int rank = pt_comm_rank(comm), t = rank % Z_T, d = rank / Z_T;
    pt_model_config cfg;
    REQUIRE(pt_model_config_load("llama-tiny", &cfg));
    layout one;
    layout_make_rank(&one, &cfg, Z_T, 1, Z_D, d, t);
    layout_fill(&one, 3, 0);
    pt_ckpt_saver *sv;
    REQUIRE(pt_ckpt_saver_create(root, 0, 1, 1, &sv));
    pt_ckpt_save_opts so = { .optim_only = d > 0 };
    pt_train_state ts = { .step = 10, .data_step = 10, .seed = 3, .run_json = "{\"model\":\"llama-tiny\"}" };
    REQUIRE(pt_ckpt_save_ex(sv, comm, one.m, one.o, 1, &ts, &so));
    REQUIRE(pt_ckpt_saver_wait(sv));
    /* without ZeRO: every rank saves its weights and whole moments; replica 1's are copies */
    pt_optim *whole;
    REQUIRE(pt_optim_create(one.m[0], &adam, &whole));
    pt_optim *zero = one.o[0];
    one.o[0] = whole;
    layout_fill(&one, 2, 0);
    ts.step = ts.data_step = 20;
    REQUIRE(pt_ckpt_save_ex(sv, comm, one.m, one.o, 1, &ts, NULL));
    REQUIRE(pt_ckpt_saver_wait(sv));
    pt_ckpt_saver_destroy(sv);
    one.o[0] = zero;
    pt_optim_destroy(whole);
    layout_drop(&one);
    pt_comm_destroy(comm);
    return 0;
}

static void zero_tp(const char *argv0)
{
    char root[] = "/tmp/pt_ckpt_tp_XXXXXX";
    if (!mkdtemp(root))
        exit(1);
    char *child[] = { (char *)argv0, "--rank", root, NULL };
    int code = -1;
    pt_launch_opts lo = { .nproc = Z_T * Z_D, .nodes = 1, .node_rank = 0, .master = NULL };
    REQUIRE(pt_launch(&lo, child, &code));
    CHECK(code == 0, "the %d ranks' saves exited %d", Z_T * Z_D, code);
    pt_model_config cfg;
    REQUIRE(pt_model_config_load("llama-tiny", &cfg));
    char dir[600];
    snprintf(dir, sizeof dir, "%s/step_000010", root);
    pt_ckpt_manifest *man;
    REQUIRE(pt_ckpt_manifest_read(dir, &man));
    int from_replica1 = 0, weights_from_replica1 = 0, box_parts = 0;
    for (int i = 0; i < man->n_entries; i++) {
        const pt_ckpt_entry *e = &man->entries[i];
        from_replica1 += e->rank >= Z_T;
        weights_from_replica1 += e->rank >= Z_T && e->kind == PT_CKPT_PARAM;
        box_parts += pt_ckpt_entry_is_box(e) && e->elem_hi - e->elem_lo < (e->box.r1 - e->box.r0) * (e->box.c1 - e->box.c0);
    }
    /* every TP rank's cut is inside a column slice: 2 moments x 2 sides x 4 ranks parts of boxes */
    CHECK(man->version == PT_CKPT_FORMAT_VERSION && man->n_ranks == Z_T * Z_D && from_replica1 > 0 &&
              weights_from_replica1 == 0 && box_parts == 4 * Z_T,
          "ZeRO manifest: format %d, %d ranks, %d entries from replica 1 (%d weights), %d parts of boxes", man->version,
          man->n_ranks, from_replica1, weights_from_replica1, box_parts);
    pt_ckpt_manifest_destroy(man);
    /* T = 1 whole optimizers in 2 stages; T = 2 in D = 3 slices; T = 4 whole */
    const int Ts[3] = { 1, 2, 4 }, Ps[3] = { 2, 1, 1 }, Ds[3] = { 0, 3, 0 };
    for (int c = 0; c < 3; c++)
        for (int d = 0; d < (Ds[c] ? Ds[c] : 1); d++) {
            layout l;
            layout_make(&l, &cfg, Ts[c], Ps[c], Ds[c], d);
            layout_fill(&l, 3, 1);
            char what[160];
            snprintf(what, sizeof what, "ZeRO T=4 D=2 -> T=%d P=%d D=%d (replica %d)", Ts[c], Ps[c], Ds[c], d);
            pt_status st = layout_load(dir, &l, 1);
            CHECK(st == PT_OK, "%s: %s", what, pt_last_error());
            if (st == PT_OK && !layout_matches(&l, 1, 10, what))
                failures++;
            layout_drop(&l);
        }
    snprintf(dir, sizeof dir, "%s/step_000020", root);
    REQUIRE(pt_ckpt_manifest_read(dir, &man));
    from_replica1 = 0;
    for (int i = 0; i < man->n_entries; i++)
        from_replica1 += man->entries[i].rank >= Z_T;
    CHECK(from_replica1 == 0, "without ZeRO, %d entries kept from replica 1 (copies of replica 0's)", from_replica1);
    pt_ckpt_manifest_destroy(man);
    layout l;
    layout_make(&l, &cfg, 2, 1, 0, 0);
    layout_fill(&l, 3, 1);
    pt_status st = layout_load(dir, &l, 1);
    CHECK(st == PT_OK, "no ZeRO T=4 D=2 -> T=2: %s", pt_last_error());
    if (st == PT_OK && !layout_matches(&l, 1, 20, "no ZeRO T=4 D=2 -> T=2"))
        failures++;
    layout_drop(&l);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    run(cmd);
}

int main(int argc, char **argv)
{
    REQUIRE(pt_backend_get("cpu", &be));
    REQUIRE(be->stream_create(&(pt_stream_opts){ .device = 0, .n_threads = 1 }, &stream));
    as_device = *be;
    as_device.name = "cpu-as-device";
    if (argc == 3 && strcmp(argv[1], "--rank") == 0)
        return rank_main(argv[2]);
    const char *pipetrain = argc > 1 ? argv[1] : NULL;
    reshard_matrix("gpt2-tiny");
    reshard_matrix("llama-tiny");
    init_matches_model("gpt2-tiny");
    init_matches_model("llama-tiny");
    missing_rank(pipetrain);
    written_boxes();
    zero_tp(argv[0]);
    be->stream_destroy(stream);
    if (failures) {
        fprintf(stderr, "ckpt.tp: %d failure(s)\n", failures);
        return 1;
    }
    printf("ckpt.tp: ok\n");
    return 0;
}
